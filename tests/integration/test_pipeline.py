"""Jobs through a real Celery worker process to the sandboxes, results read back."""

from __future__ import annotations

import json

from celery import Celery
from kombu import Connection

import worker
from tests.integration.conftest import Pipeline
from tests.test_service import drain


def test_one_job_per_engine_is_created(live: Pipeline) -> None:
    from worker.demo import demo_jobs

    jobs = demo_jobs()
    ids = [worker.enqueue(job) for _expected, job in jobs]
    results = live.wait_all(ids)
    assert [r.status for r in results] == [expected for expected, _job in jobs]
    for name in ("camunda8", "camunda7", "processmaker4", "blueworks", "tas"):
        assert live.sandbox.app(name).count() == 1, name
    assert results[-2].instance_id == results[0].instance_id  # the duplicate
    assert results[-1].error is not None and "did you mean 'orders'" in results[-1].error.message


def test_every_job_gets_exactly_one_result_on_the_queue(live: Pipeline) -> None:
    jobs = [
        {
            "target": "orders",
            "process": "order-process",
            "variables": {"n": i},
            "idempotency_key": f"bulk-{i % 10}",
        }
        for i in range(10)
    ] + [
        {
            "target": "orders",
            "process": "order-process",
            "variables": {"n": i},
            "idempotency_key": f"bulk-{i}",
        }
        for i in range(10)
    ]
    ids = worker.enqueue_many(jobs)
    results = live.wait_all(ids)
    statuses = sorted(r.status for r in results)
    assert statuses.count("created") == 10
    assert statuses.count("duplicate") == 10
    assert live.sandbox.app("camunda8").count() == 10
    published = drain(live.env["STARTPROC_BROKER_URL"])
    assert sorted(m["job_id"] for m in published) == sorted(ids)


def test_send_task_by_name_from_a_foreign_app(live: Pipeline) -> None:
    other = Celery("someone-else", broker=live.env["STARTPROC_BROKER_URL"])
    sent = other.send_task(
        "startproc.start_process",
        kwargs={"job": {"target": "orders", "process": "order-process", "business_key": "F-1"}},
        queue="startproc.jobs",
    )
    result = live.wait(sent.id)
    assert result.status == "created"
    assert result.job_id == sent.id
    assert result.idempotency_key == "orders:order-process:F-1"
    assert result.enqueued_at is not None


def test_garbage_messages_get_an_invalid_result_and_the_worker_survives(live: Pipeline) -> None:
    other = Celery("someone-else", broker=live.env["STARTPROC_BROKER_URL"])
    bad = [
        other.send_task(
            "startproc.start_process", kwargs={"job": "{not json"}, queue="startproc.jobs"
        ),
        other.send_task("startproc.start_process", kwargs={"jobs": {}}, queue="startproc.jobs"),
        other.send_task("startproc.start_process", args=[1, 2], queue="startproc.jobs"),
        other.send_task(
            "startproc.start_process",
            kwargs={
                "job": {"target": "orders", "process": "p", "variables": {"x": "y" * 1_100_000}}
            },
            queue="startproc.jobs",
        ),
    ]
    for sent in bad:
        result = live.wait(sent.id)
        assert result.status == "failed" and result.error is not None
        assert result.error.kind == "invalid"
    good = worker.enqueue({"target": "orders", "process": "order-process"})
    assert live.wait(good).status == "created"


def test_undecodable_body_still_gets_a_result(live: Pipeline) -> None:
    with Connection(live.env["STARTPROC_BROKER_URL"]) as conn:
        producer = conn.Producer()
        producer.publish(
            b"\x00\x01 definitely not json",
            routing_key="startproc.jobs",
            exchange="",
            content_type="application/json",
            content_encoding="utf-8",
            headers={"id": "garbage-1", "task": "startproc.start_process", "lang": "py"},
        )
    result = live.wait("garbage-1")
    assert result.status == "failed" and result.error is not None
    assert result.error.kind == "invalid"
    assert (
        live.wait(worker.enqueue({"target": "orders", "process": "order-process"})).status
        == "created"
    )


def test_results_are_json_a_non_python_consumer_can_read(live: Pipeline) -> None:
    import redis

    job_id = worker.enqueue({"target": "cases", "process": "27", "variables": {"amount": 3}})
    live.wait(job_id)
    client = redis.Redis.from_url(live.env["STARTPROC_BROKER_URL"])
    raw = client.rpop("startproc.results")
    envelope = json.loads(raw)
    import base64

    body = json.loads(base64.b64decode(envelope["body"]))
    assert envelope["content-type"] == "application/json"
    assert body["job_id"] == job_id and body["status"] == "created"
