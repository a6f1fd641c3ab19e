"""The sweeper: re-drives what fell through the cracks. Run by beat, or `startproc sweep`.

Three kinds of leftovers:

* results recorded but not published (a worker died between the two steps,
  or the broker refused the publish): published now from the outbox;
* jobs whose worker process died while running them (its heartbeat key
  expired, `worker.delivery.liveness`): re-enqueued at once, not after the broker's
  visibility timeout or their deadline;
* jobs a worker took but nobody decided before their deadline (a retry that
  could not be re-queued, a lost message): re-enqueued likewise.

Re-enqueued means under the same job id and idempotency key, which the ledger
turns into a no-op if the first copy is still alive somewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from worker.delivery.dlq import DeadLetters
from worker.delivery.inflight import InFlight
from worker.delivery.results import ResultStore

log = structlog.get_logger("worker.delivery.sweeper")
Republish = Callable[[list[dict[str, Any]]], Any]


@dataclass(frozen=True)
class SweepReport:
    published: int
    redriven: int
    cleared: int
    orphans: int = 0
    """Of ``redriven``: jobs whose worker's heartbeat had expired."""
    dead_letters_expired: int = 0


def sweep(
    results: ResultStore,
    inflight: InFlight,
    republish: Republish,
    outbox_grace: float = 30.0,
    redrive_window: float = 600.0,
    now: float | None = None,
    dead_letters: DeadLetters | None = None,
    dlq_retention: float | None = None,
) -> SweepReport:
    """One pass; ``dlq_retention`` (seconds) also removes dead letters older than that."""
    now = time.time() if now is None else now
    expired: tuple[str, ...] = ()
    if dead_letters is not None and dlq_retention is not None:
        expired = dead_letters.expire(now - dlq_retention)
        if expired:
            log.warning("dlq.expired", count=len(expired), job_ids=list(expired[:20]))
    published = sum(
        results.publish_pending(job_id) for job_id in results.pending(older_than=outbox_grace)
    )
    redrive: dict[str, dict[str, Any]] = {}
    cleared = 0
    orphans = inflight.orphans()
    for job_id, holder, _job in orphans:
        inflight.disown(job_id, holder)
    for job_id, job in [(j, job) for j, _h, job in orphans] + inflight.overdue(now):
        if job_id in redrive:
            continue
        if not isinstance(job, dict) or _decided(results, job_id, job):
            inflight.done(job_id)
            cleared += 1
            continue
        redrive[job_id] = {**job, "job_id": job.get("job_id") or job_id}
        inflight.track(job_id, job, now + redrive_window)
    if redrive:
        republish(list(redrive.values()))
    report = SweepReport(
        published=published,
        redriven=len(redrive),
        cleared=cleared,
        orphans=sum(1 for job_id, _h, _j in orphans if job_id in redrive),
        dead_letters_expired=len(expired),
    )
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
def warn_results_backlog(broker: redis.Redis, queue: str, threshold: int) -> int:
    """The results queue's depth on a Redis broker; a warning past ``threshold`` (0: never).

    The queue has no cap and no TTL (a result must not vanish unread), so a
    queue nobody consumes grows until Redis is full; this says so early.
    """
    from worker.metrics import queue_depths

    [depth] = queue_depths(broker, queue)
    if threshold and depth > threshold:
        log.warning(
            "results.queue_backlog",
            queue=queue,
            depth=depth,
            threshold=threshold,
            message="results are not being consumed: the queue has no cap or TTL and grows "
            "until Redis is full (see the README's sizing table); start its consumer, or "
            "raise STARTPROC_RESULTS_QUEUE_WARN_DEPTH",
        )
    return depth
