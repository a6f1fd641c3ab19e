"""The sweeper: re-drives what fell through the cracks. Run by beat, or `startproc sweep`.

Two kinds of leftovers:

* results recorded but not published (a worker died between the two steps,
  or the broker refused the publish): published now from the outbox;
* jobs a worker took but nobody decided before their deadline (a retry that
  could not be re-queued, a lost message, a dead threads-pool worker):
  re-enqueued under the same job id and idempotency key, which the ledger
  turns into a no-op if the first copy is still alive somewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from worker.inflight import InFlight
from worker.results import ResultStore

log = structlog.get_logger("worker.sweeper")
Republish = Callable[[list[dict[str, Any]]], Any]


@dataclass(frozen=True)
class SweepReport:
    published: int
    redriven: int
    cleared: int


def sweep(
    results: ResultStore,
    inflight: InFlight,
    republish: Republish,
    outbox_grace: float = 30.0,
    redrive_window: float = 600.0,
    now: float | None = None,
) -> SweepReport:
    now = time.time() if now is None else now
    published = sum(
        results.publish_pending(job_id) for job_id in results.pending(older_than=outbox_grace)
    )
    redrive: list[dict[str, Any]] = []
    cleared = 0
    for job_id, job in inflight.overdue(now):
        if not isinstance(job, dict) or _decided(results, job_id, job):
            inflight.done(job_id)
            cleared += 1
            continue
        redrive.append({**job, "job_id": job.get("job_id") or job_id})
        inflight.track(job_id, job, now + redrive_window)
    if redrive:
        republish(redrive)
    report = SweepReport(published=published, redriven=len(redrive), cleared=cleared)
    if published or redrive or cleared:
        log.warning("sweeper.swept", **report.__dict__)
    return report


def _decided(results: ResultStore, job_id: str, job: dict[str, Any]) -> bool:
    """Whether the job has its result, also under its own ``job_id``.

    Workers before one identity per job registered a foreign job under its
    Celery task id but recorded its result under the job's ``job_id``.
    """
    own = job.get("job_id")
    ids = [job_id, own] if isinstance(own, str) and own != job_id else [job_id]
    return any(results.get(one) is not None for one in ids)
