"""The P1 baseline: a Celery app whose one task does nothing but say that it ran.

It runs as its own worker (``celery -A benchmarks.noop_app worker``) with the
broker, serializer, acknowledgement, prefetch and pool settings of the real
app (``worker/celery_app.py``), and its messages are the same prepared jobs
sent the same way (`publish` mirrors ``worker.producer.publish``). So the
difference between the two rates is what our task does per job.

"Nothing" is one ``LPUSH`` onto `DONE_LIST`: the equivalent of the one
result per job the real task publishes, and what lets the benchmark wait for
the last task without polling.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import redis
from celery import Celery
from kombu.entity import Exchange, Queue

TASK_NAME = "bench.noop"
QUEUE = "bench.noop"
DONE_LIST = "bench.noop.done"

_concurrency = int(os.environ.get("STARTPROC_WORKER_CONCURRENCY", "16"))
_time_limit = int(os.environ.get("STARTPROC_TASK_TIME_LIMIT", "300"))

app = Celery("bench_noop")
app.conf.update(
    broker_url=os.environ.get("STARTPROC_BROKER_URL"),
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        "visibility_timeout": int(os.environ.get("STARTPROC_VISIBILITY_TIMEOUT", "3600"))
    },
    broker_pool_limit=max(10, _concurrency),
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_acks_on_failure_or_timeout=True,
    worker_prefetch_multiplier=1,
    task_time_limit=_time_limit,
    task_soft_time_limit=max(_time_limit - 10, 5),
    task_default_queue=QUEUE,
    task_queues=[Queue(QUEUE, Exchange(""), routing_key=QUEUE, durable=True)],
    task_default_exchange="",
    task_create_missing_queues=True,
    worker_pool=os.environ.get("STARTPROC_WORKER_POOL", "threads"),
    worker_concurrency=_concurrency,
    worker_cancel_long_running_tasks_on_connection_loss=False,
    enable_utc=True,
)


@cache
def _done_client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["STARTPROC_BROKER_URL"])


@app.task(name=TASK_NAME, acks_late=True)
def noop(*_args: Any, **_kwargs: Any) -> None:
    _done_client().lpush(DONE_LIST, b"1")


def publish(prepared: list[dict[str, Any]], broker_url: str) -> None:
    """Send prepared jobs to the no-op task on one connection, like ``producer.publish``."""
    with app.connection_for_write(broker_url) as conn:
        producer = app.amqp.Producer(conn)
        for data in prepared:
            app.send_task(
                TASK_NAME,
                kwargs={"job": data},
                task_id=data["job_id"],
                queue=QUEUE,
                routing_key=QUEUE,
                producer=producer,
            )
