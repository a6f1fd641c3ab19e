"""Counting a job's deliveries, so a job that keeps killing its worker is seen as poison.

Every delivery is counted, and so is every delivery that ended in a planned
retry; the rest were lost with their worker, so a crash loop shows up as a
growing difference. The retry count is kept in Redis, not taken from the
message: a job the sweeper re-drives arrives as a new message with
``retries = 0``. Arrival also registers the job for the sweeper before
anything can fail, and reads an earlier result: one round trip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from worker.delivery.inflight import InFlight
from worker.delivery.redis_batch import Batch
from worker.keys import deliveries_key, result_key, retried_key
from worker.models import Result

DELIVERY_COUNT_TTL = 86400
"""Seconds the per-job delivery counters are kept after the last delivery."""


@dataclass(frozen=True)
class Deliveries:
    client: redis.Redis
    inflight: InFlight
    decide_within: float
    """Seconds after which the sweeper re-drives a job nobody decided."""

    def arrive(
        self, job_id: str, raw_job: Any, retries: int, holder: str, encoded: str | None = None
    ) -> tuple[Result | None, int]:
        """(an earlier result, deliveries lost with their worker so far).

        ``encoded``: a dict ``raw_job`` as `worker.models.compact_json` made it already.
        """
        key = deliveries_key(job_id)
        batch = Batch(self.client)
        batch.command("GET", result_key(job_id))
        batch.command("INCR", key)
        batch.command("EXPIRE", key, DELIVERY_COUNT_TTL)
        batch.command("GET", retried_key(job_id))
        if isinstance(raw_job, dict):
            now = time.time()
            deadline = now + self.decide_within
            self.inflight.track(job_id, raw_job, deadline, batch, holder=holder, encoded=encoded)
            self.inflight.taken(job_id, batch, now)
        raw_result, count, _, retried, *_ = batch.execute()
        existing = Result.model_validate_json(raw_result) if raw_result else None
        # Celery's own count still covers retries the service never saw (internal errors).
        planned = max(int(retried or 0), retries)
        return existing, int(count) - 1 - planned

    def planned_retry(self, job_id: str, raw_job: Any, after: float) -> None:
        """A planned retry: move the sweeper's deadline and count it as a delivery not lost."""
        pipe = self.client.pipeline(transaction=True)
        deadline = time.time() + after + self.decide_within
        self.inflight.track(job_id, raw_job, deadline, pipe=pipe, holder="")  # in the broker now
        pipe.incr(retried_key(job_id))
        pipe.expire(retried_key(job_id), DELIVERY_COUNT_TTL)
        pipe.execute()
