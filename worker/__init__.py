"""process-start-worker: start business-process instances reliably from a queue.

The public API is small and imports nothing heavy until used::

    import worker
    job_id = worker.enqueue({"target": "orders", "process": "order-process"})
    result = worker.wait(job_id, timeout=30)

``celery -A worker worker`` finds the Celery app as ``worker.app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "app", "enqueue", "enqueue_many", "wait"]

if TYPE_CHECKING:
    from celery import Celery

    from worker.models import Result


def enqueue(job: dict[str, Any]) -> str:
    """Validate and publish one start job; returns its job id."""
    from worker.producer import enqueue as _enqueue

    return _enqueue(job)


def enqueue_many(jobs: list[dict[str, Any]]) -> list[str]:
    """Validate all, then publish all (pipelined); returns the job ids in order."""
    from worker.producer import enqueue_many as _enqueue_many

    return _enqueue_many(jobs)


def wait(job_id: str, timeout: float = 30.0) -> Result | None:
    """The job's result, waiting up to ``timeout`` seconds; None if still pending."""
    from worker.producer import wait as _wait

    return _wait(job_id, timeout)


def __getattr__(name: str) -> Celery:
    if name in ("app", "celery"):
        from worker.celery_app import app as celery_app

        return celery_app
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
