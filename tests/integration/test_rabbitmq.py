"""RabbitMQ specifics: quorum queues, Celery's native delayed delivery, other-type queues.

The shared pipeline tests (`test_pipeline.py`) already run on RabbitMQ; these
check what only RabbitMQ has. Every wait has a deadline; nothing sleeps.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import amqp
import pytest
import redis
from celery import Celery
from kombu import Queue

import worker
from tests.integration.conftest import (
    RABBITMQ_URL,
    Pipeline,
    delete_broker_entities,
    running_pipeline,
)
from tests.support.service import drain
from worker.delivery.inflight import InFlight
from worker.local.embedded import EmbeddedRedis
from worker.local.sandbox import SandboxServer

pytestmark = pytest.mark.integration

STARTPROC = [sys.executable, "-m", "worker.cli.__main__"]


@pytest.fixture
def channel() -> Iterator[amqp.Channel]:
    """A plain py-amqp channel, as another app would have (no kombu, no Celery)."""
    url = urlsplit(RABBITMQ_URL)
    with amqp.Connection(
        f"{url.hostname}:{url.port or 5672}", userid=url.username, password=url.password
    ) as conn:
        yield conn.channel()


def refusal(channel: amqp.Channel, declare: str, name: str, **kwargs: object) -> str:
    """The broker's reply text for a declaration that must be refused (406)."""
    with pytest.raises(amqp.PreconditionFailed) as refused:
        getattr(channel, declare)(name, **kwargs)
    return str(refused.value)


def test_jobs_and_results_queues_are_quorum_and_jobs_route_through_a_topic_exchange(
    live_rabbitmq: Pipeline, channel: amqp.Channel
) -> None:
    assert live_rabbitmq.wait(worker.enqueue({"target": "orders", "process": "order-process"}))
    conn = channel.connection
    for queue in (live_rabbitmq.jobs_queue, live_rabbitmq.results_queue):
        # declaring the queue as a classic one is refused: the server's is a quorum queue
        reply = refusal(conn.channel(), "queue_declare", queue, durable=True, auto_delete=False)
        assert "x-queue-type" in reply and "'quorum'" in reply, reply
    # the jobs queue's exchange has the queue's name and is a topic exchange
    reply = refusal(
        conn.channel(),
        "exchange_declare",
        live_rabbitmq.jobs_queue,
        type="direct",
        durable=True,
        auto_delete=False,
    )
    assert "current is 'topic'" in reply, reply
    # the same declarations as ours are accepted (what a consumer may safely do)
    check = conn.channel()
    check.queue_declare(
        live_rabbitmq.results_queue,
        durable=True,
        auto_delete=False,
        arguments={"x-queue-type": "quorum"},
    )
    check.exchange_declare(live_rabbitmq.jobs_queue, "topic", durable=True, auto_delete=False)
    # Celery's native delayed delivery is set up: its delivery exchange exists
    check.exchange_declare("celery_delayed_delivery", "topic", passive=True)


def poll_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Broker state has no event to block on: look every 50 ms, up to a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(0.05)


def delayed_messages(channel: amqp.Channel, levels: range) -> int:
    """Messages waiting in Celery's delay queues (celery_delayed_N holds 2**N seconds)."""
    return sum(channel.queue_declare(f"celery_delayed_{n}", passive=True)[1] for n in levels)


def test_a_retry_after_countdown_waits_in_rabbitmq_then_the_job_completes(
    live_rabbitmq: Pipeline, channel: amqp.Channel
) -> None:
    """503 + Retry-After 4 s (over the in-call cap): a Celery countdown retry.

    With native delayed delivery the retry waits in RabbitMQ (4 s = the
    celery_delayed_2 queue), not in a worker's memory.
    """
    c8 = live_rabbitmq.sandbox.app("camunda8")
    c8.faults.script([{"status": 503, "retry_after": "4"}])
    job_id = worker.enqueue({"target": "orders", "process": "order-process"})
    poll_until(
        lambda: delayed_messages(channel, range(2, 3)) > 0,
        timeout=30,
        what="the retry to wait in Celery's delay queue celery_delayed_2",
    )
    result = live_rabbitmq.wait(job_id, timeout=60)
    assert result.status == "created"
    assert c8.count() == 1
    assert c8.faults.snapshot()["injected"] == {"error": 1}


def test_a_sub_second_countdown_is_rounded_up_not_dropped(live_rabbitmq: Pipeline) -> None:
    """Four 503s spend the in-call attempts; the Celery countdown is then 0.5-1 s.

    RabbitMQ delays in whole seconds and Celery refuses (and so drops) a delay
    under one second; the worker rounds it up.
    """
    c8 = live_rabbitmq.sandbox.app("camunda8")
    c8.faults.script([{"status": 503}] * 4)
    result = live_rabbitmq.wait(worker.enqueue({"target": "orders", "process": "order-process"}))
    assert result.status == "created"
    assert c8.count() == 1
    assert c8.faults.snapshot()["injected"] == {"error": 4}


def test_the_sweeper_redrives_into_the_quorum_queue(
    live_rabbitmq: Pipeline, redis_client: redis.Redis
) -> None:
    """A job noted as undecided and overdue is re-published by the sweep task."""
    job = {
        "target": "orders",
        "process": "order-process",
        "job_id": f"lost-{uuid.uuid4().hex[:8]}",
        "enqueued_at": "2026-01-01T00:00:00.000Z",
    }
    InFlight(redis_client).track(job["job_id"], job, deadline=time.time() - 1)
    other = Celery("someone-else", broker=live_rabbitmq.broker_url)
    jobs = Queue(live_rabbitmq.jobs_queue, queue_arguments={"x-queue-type": "quorum"})
    other.send_task("startproc.sweep", queue=jobs)
    result = live_rabbitmq.wait(job["job_id"])
    assert result.status == "created"
    assert live_rabbitmq.sandbox.app("camunda8").count() == 1


def test_a_batch_file_lands_in_the_quorum_queue(live_rabbitmq: Pipeline, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    with rows.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "amount"])
        writer.writerows([f"R-{n}", str(n)] for n in range(20))
    done = subprocess.run(
        [
            *STARTPROC,
            "batch",
            str(rows),
            "-t",
            "orders",
            "-p",
            "order-process",
            "--business-key",
            "customer_id",
            "--wait",
            "60",
            "--json",
        ],
        env={**os.environ, **live_rabbitmq.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["created"] == 20
    assert live_rabbitmq.sandbox.app("camunda8").count() == 20


@pytest.fixture
def classic_queue(live_rabbitmq: Pipeline, channel: amqp.Channel) -> Iterator[str]:
    """A jobs queue as this project declared it before quorum queues: classic, default exchange."""
    name = f"startproc.jobs.classic.{uuid.uuid4().hex[:8]}"
    channel.queue_declare(name, durable=True, auto_delete=False)
    try:
        yield name
    finally:
        delete_broker_entities(RABBITMQ_URL, [name], [name])


@pytest.mark.parametrize("process", ["worker", "beat"])
def test_an_existing_classic_queue_stops_workers_and_beat_saying_what_to_do(
    live_rabbitmq: Pipeline, classic_queue: str, process: str, tmp_path: Path
) -> None:
    options = ["--pool", "solo"] if process == "worker" else ["-s", str(tmp_path / "beat")]
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", process, *options],
        env={**os.environ, **live_rabbitmq.env, "STARTPROC_JOBS_QUEUE": classic_queue},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "PRECONDITION_FAILED" in done.stderr and classic_queue in done.stderr
    assert "STARTPROC_RABBITMQ_QUEUE_TYPE=classic" in done.stderr
    assert f"let the workers empty '{classic_queue}'" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_an_existing_classic_queue_makes_enqueue_fail_saying_what_to_do(
    live_rabbitmq: Pipeline, classic_queue: str
) -> None:
    done = subprocess.run(
        [*STARTPROC, "enqueue", "-t", "orders", "-p", "order-process"],
        env={**os.environ, **live_rabbitmq.env, "STARTPROC_JOBS_QUEUE": classic_queue},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    output = " ".join((done.stdout + done.stderr).split())  # rich wraps long lines
    assert "PRECONDITION_FAILED" in output and "STARTPROC_RABBITMQ_QUEUE_TYPE=classic" in output
    assert "Traceback" not in output, output


def test_the_classic_setting_keeps_serving_queues_declared_before_quorum(
    live_rabbitmq: Pipeline,
    channel: amqp.Channel,
    redis_server: EmbeddedRedis,
    sandbox_server: SandboxServer,
    tmp_path: Path,
) -> None:
    """STARTPROC_RABBITMQ_QUEUE_TYPE=classic: the queues of an earlier version keep working,
    including a job that waited in them and a countdown retry (held by the worker)."""
    suffix = uuid.uuid4().hex[:8]
    jobs, results = f"startproc.jobs.old.{suffix}", f"startproc.results.old.{suffix}"
    for name in (jobs, results):
        channel.queue_declare(name, durable=True, auto_delete=False)
    backlog = Celery("someone-else", broker=RABBITMQ_URL).send_task(
        "startproc.start_process",
        kwargs={"job": {"target": "orders", "process": "order-process", "business_key": "old"}},
        queue=Queue(jobs),  # the pre-quorum recipe, on the pre-quorum queue
    )
    extra = {
        "STARTPROC_RABBITMQ_QUEUE_TYPE": "classic",
        "STARTPROC_JOBS_QUEUE": jobs,
        "STARTPROC_RESULTS_QUEUE": results,
    }
    with running_pipeline("rabbitmq", redis_server, sandbox_server, tmp_path, extra) as classic:
        assert classic.wait(backlog.id).status == "created"
        c8 = classic.sandbox.app("camunda8")
        c8.faults.script([{"status": 503, "retry_after": "2"}])
        retried = worker.enqueue({"target": "orders", "process": "order-process"})
        assert classic.wait(retried).status == "created"
        assert c8.count() == 2
        published = drain(classic.broker_url, classic.results_queue)
        assert len(published) == 2
