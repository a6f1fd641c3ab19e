"""Producing jobs from Python: validate here, publish by task name, wait on the results index.

A producer needs only the broker URL (and the Redis URL to wait): it sends by
task *name*, so no worker code runs in the producing app.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from worker.config import settings
from worker.models import Job, Result, iso_ms, utcnow


def prepare(job: dict[str, Any] | Job) -> dict[str, Any]:
    """Validate a job and give it an id and an enqueue time; raises `InvalidJob`."""
    model = job if isinstance(job, Job) else Job.parse(job)
    data = model.model_dump(mode="json", exclude_none=True)
    data.setdefault("job_id", str(uuid.uuid4()))
    data.setdefault("enqueued_at", iso_ms(utcnow()))
    return data


def publish(prepared: Iterable[dict[str, Any]], broker_url: str | None = None) -> list[str]:
    """Send prepared jobs on one broker connection; returns their ids."""
    from worker.celery_app import TASK_NAME, app

    cfg = settings()
    queue = cfg.jobs_queue
    ids = []
    with app.connection_for_write(broker_url or cfg.require_broker()) as conn:
        producer = app.amqp.Producer(conn)
        for data in prepared:
            app.send_task(
                TASK_NAME,
                kwargs={"job": data},
                task_id=data["job_id"],
                queue=queue,
                routing_key=queue,
                producer=producer,
            )
            ids.append(data["job_id"])
    return ids


def enqueue(job: dict[str, Any] | Job) -> str:
    return publish([prepare(job)])[0]


def enqueue_many(jobs: Iterable[dict[str, Any] | Job]) -> list[str]:
    """All jobs are validated before the first is sent: a bad one sends none."""
    return publish([prepare(job) for job in jobs])


def wait(job_id: str, timeout: float = 30.0) -> Result | None:
    from worker.runtime import result_store

    return result_store(settings()).wait(job_id, timeout)
