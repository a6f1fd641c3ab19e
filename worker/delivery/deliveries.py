"""Counting a job's deliveries, so a job that keeps killing its worker is seen as poison.

Every delivery is counted, and so is every delivery that ended in a planned
retry; the rest were lost with their worker, so a crash loop shows up as a
growing difference. The retry count is kept in Redis, not taken from the
message: a job the sweeper re-drives arrives as a new message with
``retries = 0``. Arrival also registers the job for the sweeper before
anything can fail, and reads an earlier result: one script, one reply.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import redis
from redis.commands.core import Script

from worker.delivery.inflight import REGISTRY_KEYS, InFlight
from worker.delivery.redis_batch import ScriptCall
from worker.keys import deliveries_key, result_key, retried_key
from worker.models import Result, compact_json

DELIVERY_COUNT_TTL = 86400
"""Seconds the per-job delivery counters are kept after the last delivery."""

_ARRIVE = """
local result = redis.call('GET', KEYS[1])
local count = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[1])
local retried = redis.call('GET', KEYS[3])
if ARGV[2] == '1' then
  -- registered for the sweeper as `InFlight.track` would, and when it was first taken
  redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
  redis.call('ZADD', KEYS[5], ARGV[5], ARGV[3])
  if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[6], ARGV[3], ARGV[6])
  else
    redis.call('HDEL', KEYS[6], ARGV[3])
  end
  redis.call('ZADD', KEYS[7], 'NX', ARGV[7], ARGV[3])
end
return {result or false, count, retried or false}
"""


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
        tracked = isinstance(raw_job, dict)
        if tracked and encoded is None:
            encoded = compact_json(raw_job)
        now = time.time()
        call = ScriptCall(
            self._arrive,
            [result_key(job_id), deliveries_key(job_id), retried_key(job_id), *REGISTRY_KEYS],
            [
                DELIVERY_COUNT_TTL,
                "1" if tracked else "0",
                job_id,
                encoded or "",
                now + self.decide_within,
                holder,
                now,
            ],
        )
        raw_result, count, retried = call.run()
        existing = Result.model_validate_json(raw_result) if raw_result else None
        # Celery's own count still covers retries the service never saw (internal errors).
        planned = max(int(retried or 0), retries)
        return existing, int(count) - 1 - planned

    @cached_property
    def _arrive(self) -> Script:
        return self.client.register_script(_ARRIVE)

    def planned_retry(self, job_id: str, raw_job: Any, after: float) -> None:
        """A planned retry: move the sweeper's deadline and count it as a delivery not lost."""
        pipe = self.client.pipeline(transaction=True)
        deadline = time.time() + after + self.decide_within
        self.inflight.track(job_id, raw_job, deadline, pipe=pipe, holder="")  # in the broker now
        pipe.incr(retried_key(job_id))
        pipe.expire(retried_key(job_id), DELIVERY_COUNT_TTL)
        pipe.execute()
