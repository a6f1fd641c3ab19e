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
from kombu.pools import producers

from worker.broker.connections import shared_broker_connection
from worker.celery_app import reliability_conf
from worker.config import settings

TASK_NAME = "bench.noop"
QUEUE = "bench.noop"
DONE_LIST = "bench.noop.done"

app = Celery("bench_noop")
app.conf.update(reliability_conf(settings(), QUEUE))


@cache
def _done_client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["STARTPROC_BROKER_URL"])


@app.task(name=TASK_NAME, acks_late=True)
def noop(*_args: Any, **_kwargs: Any) -> None:
    _done_client().lpush(DONE_LIST, b"1")


def publish(prepared: list[dict[str, Any]], broker_url: str) -> None:
    """Send prepared jobs to the no-op task with a pooled producer, like ``producer.publish``."""
    connection = shared_broker_connection(broker_url)
    with producers[connection].acquire(block=True, timeout=30) as producer:
        for data in prepared:
            app.send_task(
                TASK_NAME,
                kwargs={"job": data},
                task_id=data["job_id"],
                queue=QUEUE,
                routing_key=QUEUE,
                producer=producer,
            )
