"""Producing jobs from Python: validate here, publish by task name, wait on the results index.

A producer needs only the broker URL (and the Redis URL to wait): it sends by
task *name*, so no worker code runs in the producing app.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import redis
from kombu.pools import producers

from worker.broker.connections import is_amqp, shared_broker_connection, shared_redis
from worker.broker.redis_policy import check_settings
from worker.config import settings
from worker.delivery.inflight import InFlight
from worker.models import Job, Result, iso_ms, utcnow
from worker.tracing import context as tracing

if TYPE_CHECKING:
    from worker.delivery.results import ResultStore


def prepare(job: dict[str, Any] | Job) -> dict[str, Any]:
    """Validate a job and give it an id and an enqueue time; raises `InvalidJob`."""
    model = job if isinstance(job, Job) else Job.parse(job)
    data = model.model_dump(mode="json", exclude_none=True)
    data.setdefault("job_id", str(uuid.uuid4()))
    data.setdefault("enqueued_at", iso_ms(utcnow()))
    return data


def register(jobs: list[dict[str, Any]], client: redis.Redis | None = None) -> None:
    """Note jobs as undecided *before* sending them, for the sweeper and for ``status``.

    A Redis broker can lose a message (kombu pops it, then records it as
    unacknowledged in a second command; a Redis dying in between forgets
    it), and a Redis without persistence loses the whole queue. A job noted
    here that has no result after ``STARTPROC_REDRIVE_AFTER`` seconds is
    re-enqueued by the sweeper under the same id and key: at worst a no-op.
    With ``STARTPROC_REDRIVE_AFTER=0`` jobs are still noted, without a
    deadline, so ``startproc status`` can tell "pending" from "unknown".
    """
    register_payloads({job["job_id"]: json.dumps(job, default=str) for job in jobs}, client)


def register_payloads(
    payloads: Mapping[str, str | bytes], client: redis.Redis | None = None
) -> None:
    """`register` for jobs already serialized (job id -> ``json.dumps(job, default=str)``).

    All of them in one ``HSET`` (and one ``ZADD``): a batch chunk of 1,000
    jobs costs two commands, not 2,000.
    """
    cfg = settings()
    url = cfg.effective_redis_url()
    if not payloads or (client is None and not url):
        return
    client = client or shared_redis(str(url))
    inflight = InFlight(client)
    pipe = client.pipeline(transaction=False)
    if cfg.redrive_after:
        inflight.track_many(payloads, time.time() + cfg.redrive_after, pipe)
    else:
        inflight.note_many(payloads, pipe)
    pipe.execute()


def publish(prepared: Iterable[dict[str, Any]], broker_url: str | None = None) -> list[str]:
    """Register, then send prepared jobs on one broker connection; returns their ids.

    The jobs queue is declared (once per connection) exactly as the workers
    declare it for this broker: on RabbitMQ a quorum queue and its topic
    exchange, unless ``STARTPROC_RABBITMQ_QUEUE_TYPE=classic``. A queue of
    another type already on the server raises `ConfigError` saying what to do.
    The send is one span (`tracing.producer_span`, under the caller's current
    span if any); each message carries its context.
    """
    from worker.celery_app import (
        TASK_NAME,
        app,
        is_precondition_failed,
        jobs_queue_for,
        queue_mismatch,
    )

    cfg = settings()
    url = broker_url or cfg.require_broker()
    check_settings(cfg, url)  # once per process and URL: an evicting Redis is refused
    queue = jobs_queue_for(cfg, url)
    prepared = list(prepared)
    register(prepared)
    ids = []
    connection = shared_broker_connection(url)  # no new connection per enqueue
    system = "rabbitmq" if is_amqp(url) else "redis"
    with (
        tracing.producer_span(queue.name, system, prepared),
        producers[connection].acquire(block=True, timeout=30) as producer,
    ):
        for data in prepared:
            try:
                app.send_task(
                    TASK_NAME,
                    kwargs={"job": data},
                    task_id=data["job_id"],
                    queue=queue,
                    routing_key=queue.routing_key,
                    producer=producer,
                )
            except connection.channel_errors as exc:
                if is_precondition_failed(exc):
                    raise queue_mismatch(cfg, exc) from None
                raise
            ids.append(data["job_id"])
    return ids


def enqueue(job: dict[str, Any] | Job) -> str:
    return publish([prepare(job)])[0]


def enqueue_many(jobs: Iterable[dict[str, Any] | Job]) -> list[str]:
    """All jobs are validated before the first is sent: a bad one sends none."""
    return publish([prepare(job) for job in jobs])


def wait(job_id: str, timeout: float = 30.0) -> Result | None:
    from worker.runtime import result_store

    cfg = settings()
    url = cfg.require_redis()
    if url not in _STORES:  # built once: it registers Lua scripts and a connection pool
        _STORES[url] = result_store(cfg)
    return _STORES[url].wait(job_id, timeout)


_STORES: dict[str, ResultStore] = {}
