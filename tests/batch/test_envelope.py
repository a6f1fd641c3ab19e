"""The batch's fast path sends what ``app.send_task`` sends: the envelope must not drift.

On Redis a batch builds each chunk's messages from one template
(`worker.batch.envelope`) and each job's JSON from encoded parts
(`worker.batch.outgoing`). These tests send the same job both ways into the
suite's embedded Redis and compare the raw bytes kombu stored, apart from
what differs per message anyway (task id, delivery tag, publish time): a
change in Celery's message protocol, kombu's Redis envelope or our own
headers fails here.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.support.tracing import in_memory
from worker import keys
from worker.batch.outgoing import JobText, Outgoing, random_ids
from worker.batch.send import Sender
from worker.tracing import context as tracing

QUEUE = "startproc.jobs"
PUBLISHED_AT = re.compile(rb'"startproc_published_at": [0-9.e+-]+')


@pytest.fixture
def sender(redis_url: str, redis_client: redis.Redis) -> Iterator[Sender]:
    with Sender(redis_url, QUEUE, redis_client, "orders", "customers.csv:orders:p") as opened:
        assert opened.recorder is not None, "a Redis broker takes the fast path"
        yield opened


BASE = {"target": "orders", "process": "order-process", "batch_id": "customers.csv:orders:p"}


def job_dict(business_key: str | None = "C-1", **base: Any) -> dict[str, Any]:
    job: dict[str, Any] = dict(
        {**BASE, **base},
        variables={"customerId": "C-1", "name": "Zoë \"quoted\" 100%", "amount": 1.5, "vip": True},
        idempotency_key=f"batch:customers.csv:orders:p:{business_key}",
        job_id=str(uuid.uuid4()),
        enqueued_at="2026-11-25T10:00:00.042Z",
    )
    if business_key is not None:
        job["business_key"] = business_key
    return job


def outgoing(job: dict[str, Any]) -> Outgoing:
    base = {k: v for k, v in job.items() if k not in PER_ROW}
    return JobText(base).job(
        job["job_id"],
        json.dumps(job["variables"]),
        job["idempotency_key"],
        job.get("business_key"),
        job["enqueued_at"],
    )


PER_ROW = ("variables", "idempotency_key", "job_id", "enqueued_at", "business_key")


def pushed(redis_url: str) -> list[bytes]:
    """The raw messages in the jobs queue, oldest first (the order a worker takes them)."""
    with redis.Redis.from_url(redis_url) as client:
        raw: list[bytes] = client.lrange(QUEUE, 0, -1)  # type: ignore[assignment]
    return raw[::-1]


def normalised(raw: bytes) -> bytes:
    """The message with what differs per send anyway blanked: delivery tag, publish time."""
    message = json.loads(raw)
    tag = message["properties"]["delivery_tag"].encode()
    return PUBLISHED_AT.sub(b'"startproc_published_at": 0', raw.replace(tag, b"TAG"))


@pytest.mark.parametrize(
    ("business_key", "base"),
    [
        ("C-1", {}),
        (None, {}),
        ("Zoë-7", {"version": 3, "tenant_id": "t1", "options": {"tags": ["a"]}}),
    ],
)
def test_job_text_is_json_dumps_of_the_job(business_key: str | None, base: dict[str, Any]) -> None:
    job = job_dict(business_key, **base)
    made = outgoing(job)
    assert made.payload == json.dumps(job, default=str).encode()
    assert (made.job_id, made.key) == (job["job_id"], job["idempotency_key"])


def test_random_ids_are_uuid4_text() -> None:
    ids = random_ids(500)
    assert len(set(ids)) == 500
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_fast_path_message_equals_send_task(sender: Sender, redis_url: str) -> None:
    """Same job both ways: byte for byte the same message, once tag and publish time are blanked."""
    job = job_dict()
    provider, _ = in_memory()
    with tracing.using(provider), tracing.tracer().start_as_current_span("caller") as span:
        sender.send([outgoing(job)])
        sender._send_one_by_one([job])  # what a non-Redis broker gets: app.send_task per job
        context = span.get_span_context()
    fast, slow = pushed(redis_url)
    assert normalised(fast) == normalised(slow)

    message = json.loads(fast)
    headers, properties = message["headers"], message["properties"]
    assert headers["id"] == headers["root_id"] == properties["correlation_id"] == job["job_id"]
    assert headers["task"] == "startproc.start_process"
    assert headers["kwargsrepr"] == "{'job': <batch customers.csv:orders:p>}"
    assert headers["traceparent"].startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    assert isinstance(headers["startproc_published_at"], float)
    body = json.loads(base64.b64decode(message["body"]))
    assert body == [[], {"job": job}, dict.fromkeys(("callbacks", "errbacks", "chain", "chord"))]
    assert json.loads(slow)["properties"]["delivery_tag"] != properties["delivery_tag"]


def test_each_message_has_its_own_ids_and_the_chunk_its_in_flight_notes(
    sender: Sender, redis_url: str, redis_client: redis.Redis
) -> None:
    jobs = [job_dict(f"C-{n}") for n in range(3)]
    answers = sender.send([outgoing(job) for job in jobs])
    assert answers == [(job["job_id"], False) for job in jobs]
    messages = [json.loads(raw) for raw in pushed(redis_url)]
    assert [m["headers"]["id"] for m in messages] == [job["job_id"] for job in jobs]  # in order
    assert len({m["properties"]["delivery_tag"] for m in messages}) == 3
    for job in jobs:  # noted before sending, exactly as `worker.producer.register` notes them
        assert redis_client.hget(keys.INFLIGHT, job["job_id"]) == json.dumps(job, default=str)
        assert redis_client.zscore(keys.INFLIGHT_DEADLINES, job["job_id"]) is not None


def test_a_message_the_template_cannot_reproduce_falls_back_to_send_task(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With task-sent events on, send_task publishes two messages: the batch sends job by job."""
    from worker.celery_app import app

    monkeypatch.setitem(app.conf, "task_send_sent_event", True)
    job = job_dict()
    with Sender(redis_url, QUEUE, redis_client, "orders", "customers.csv:orders:p") as slow:
        assert slow.recorder is None
        assert slow.send([outgoing(job)]) == [(job["job_id"], False)]
    [raw] = pushed(redis_url)
    assert json.loads(raw)["headers"]["id"] == job["job_id"]


def test_big_jobs_go_as_several_pushes_in_order(
    sender: Sender, redis_url: str, redis_client: redis.Redis
) -> None:
    """Four jobs of ~1.2 MB each: two LPUSHes (4 MB each at most), still in file order."""
    jobs = [dict(job_dict(f"C-{n}"), variables={"blob": "x" * 900_000}) for n in range(4)]
    redis_client.config_resetstat()
    sender.send([outgoing(job) for job in jobs])
    assert redis_client.info("commandstats")["cmdstat_lpush"]["calls"] == 2
    messages = [json.loads(raw) for raw in pushed(redis_url)]
    assert [m["headers"]["id"] for m in messages] == [job["job_id"] for job in jobs]
