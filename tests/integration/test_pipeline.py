"""Jobs through a real Celery worker process to the sandboxes, results read back."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from celery import Celery
from kombu import Connection, Queue

import worker
from tests.integration.conftest import Pipeline
from tests.support.service import drain
from worker.delivery.inflight import InFlight


def test_one_job_per_engine_is_created(live_any: Pipeline) -> None:
    from worker.local.demo import demo_jobs

    jobs = demo_jobs()
    ids = [worker.enqueue(job) for _expected, job in jobs]
    results = live_any.wait_all(ids)
    assert [r.status for r in results] == [expected for expected, _job in jobs]
    for name in ("camunda8", "camunda7", "processmaker4", "blueworks", "tas"):
        assert live_any.sandbox.app(name).count() == 1, name
    assert results[-2].instance_id == results[0].instance_id  # the duplicate
    assert results[-1].error is not None and "did you mean 'orders'" in results[-1].error.message


def test_every_job_gets_exactly_one_result_on_the_queue(live_any: Pipeline) -> None:
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
    results = live_any.wait_all(ids)
    statuses = sorted(r.status for r in results)
    assert statuses.count("created") == 10
    assert statuses.count("duplicate") == 10
    assert live_any.sandbox.app("camunda8").count() == 10
    published = drain(live_any.broker_url, live_any.results_queue)
    assert sorted(m["job_id"] for m in published) == sorted(ids)


def jobs_queue(pipeline: Pipeline) -> Queue:
    """The README's recipe for a foreign Celery app: the jobs queue declared as the
    workers declare it (a quorum queue on RabbitMQ; Redis ignores the argument),
    sent to through the default exchange, which routes to a queue of any type."""
    return Queue(pipeline.jobs_queue, queue_arguments={"x-queue-type": "quorum"})


@pytest.mark.parametrize("declare", [True, False], ids=["declared", "not-declared"])
def test_send_task_by_name_from_a_foreign_app(live_any: Pipeline, declare: bool) -> None:
    other = Celery("someone-else", broker=live_any.env["STARTPROC_BROKER_URL"])
    job = {"target": "orders", "process": "order-process", "business_key": "F-1"}
    if declare:
        queue = jobs_queue(live_any)
        sent = other.send_task("startproc.start_process", kwargs={"job": job}, queue=queue)
    else:  # the README's alternative: no declaration at all, by name through the default exchange
        sent = other.send_task(
            "startproc.start_process", kwargs={"job": job}, queue=live_any.jobs_queue, declare=[]
        )
    result = live_any.wait(sent.id)
    assert result.status == "created"
    assert result.job_id == sent.id
    assert result.idempotency_key == "orders:order-process:F-1"
    assert result.enqueued_at is not None


def test_a_foreign_job_id_is_the_jobs_one_identity(live_any: Pipeline) -> None:
    """A foreign app's own ``job_id`` differs from the Celery task id: the job is decided
    and cleared under that one id, so nothing stays in flight for the sweeper."""
    other = Celery("someone-else", broker=live_any.env["STARTPROC_BROKER_URL"])
    own_id = f"foreign-{uuid.uuid4().hex}"
    job = {"target": "orders", "process": "order-process", "job_id": own_id}
    sent = other.send_task(
        "startproc.start_process", kwargs={"job": job}, queue=jobs_queue(live_any)
    )
    assert sent.id != own_id
    result = live_any.wait(own_id)
    assert result.status == "created" and result.job_id == own_id
    inflight = InFlight(redis.Redis.from_url(live_any.env["STARTPROC_REDIS_URL"]))
    assert inflight.size() == 0


def test_garbage_messages_get_an_invalid_result_and_the_worker_survives(live_any: Pipeline) -> None:
    other = Celery("someone-else", broker=live_any.env["STARTPROC_BROKER_URL"])
    bad = [
        other.send_task(
            "startproc.start_process", kwargs={"job": "{not json"}, queue=jobs_queue(live_any)
        ),
        other.send_task("startproc.start_process", kwargs={"jobs": {}}, queue=jobs_queue(live_any)),
        other.send_task("startproc.start_process", args=[1, 2], queue=jobs_queue(live_any)),
        other.send_task(
            "startproc.start_process",
            kwargs={
                "job": {"target": "orders", "process": "p", "variables": {"x": "y" * 1_100_000}}
            },
            queue=jobs_queue(live_any),
        ),
    ]
    for sent in bad:
        result = live_any.wait(sent.id)
        assert result.status == "failed" and result.error is not None
        assert result.error.kind == "invalid"
    good = worker.enqueue({"target": "orders", "process": "order-process"})
    assert live_any.wait(good).status == "created"


def test_undecodable_body_still_gets_a_result(live_any: Pipeline) -> None:
    with Connection(live_any.env["STARTPROC_BROKER_URL"]) as conn:
        producer = conn.Producer()
        producer.publish(
            b"\x00\x01 definitely not json",
            routing_key=live_any.jobs_queue,
            exchange="",
            content_type="application/json",
            content_encoding="utf-8",
            headers={"id": "garbage-1", "task": "startproc.start_process", "lang": "py"},
        )
    result = live_any.wait("garbage-1")
    assert result.status == "failed" and result.error is not None
    assert result.error.kind == "invalid"
    assert (
        live_any.wait(worker.enqueue({"target": "orders", "process": "order-process"})).status
        == "created"
    )


def test_results_are_read_without_this_package(live_any: Pipeline, tmp_path: Path) -> None:
    """A consumer in another process with only redis-py (Redis) or only py-amqp (RabbitMQ)."""
    job_id = worker.enqueue({"target": "cases", "process": "27", "variables": {"amount": 3}})
    live_any.wait(job_id)
    script = tmp_path / "consumer.py"
    script.write_text(REDIS_CONSUMER if live_any.broker == "redis" else AMQP_CONSUMER)
    done = subprocess.run(
        [sys.executable, "-I", str(script), live_any.broker_url, live_any.results_queue],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["job_id"] == job_id and body["status"] == "created"


# The README's recipes, run as they are: no import of this package, no kombu.
REDIS_CONSUMER = """
import base64, json, sys
import redis
client = redis.Redis.from_url(sys.argv[1])
_queue, raw = client.brpop(sys.argv[2], timeout=30)
envelope = json.loads(raw)
assert envelope["content-type"] == "application/json"
print(base64.b64decode(envelope["body"]).decode())
"""

AMQP_CONSUMER = """
import sys
from urllib.parse import urlsplit
import amqp
url = urlsplit(sys.argv[1])
with amqp.Connection(f"{url.hostname}:{url.port or 5672}", userid=url.username,
                     password=url.password) as conn:
    channel = conn.channel()
    message = channel.basic_get(sys.argv[2])
    assert message is not None and message.content_type == "application/json"
    print(message.body.decode() if isinstance(message.body, bytes) else message.body)
    channel.basic_ack(message.delivery_tag)
"""


def test_an_absurd_retry_after_still_ends_in_one_result(live: Pipeline) -> None:
    """``Retry-After: 300000000000`` used to overflow the retry's ETA: Celery rejected the
    message and the job never got a result. Now the countdown is capped (4 s here)."""
    app = live.sandbox.app("camunda8")
    app.faults.script([{"status": 503, "retry_after": "300000000000"}])
    job_id = worker.enqueue({"target": "orders", "process": "order-process", "business_key": "RA"})
    result = live.wait(job_id, timeout=30)
    assert result.status == "created" and result.attempts == 2
    assert app.count() == 1
    assert [m["job_id"] for m in drain(live.broker_url, live.results_queue)] == [job_id]
