"""Counting a job's deliveries, so a job that keeps killing its worker is seen as poison.

Every delivery is counted, and so is every delivery that ended in a planned
retry; the rest were lost with their worker, so a crash loop shows up as a
growing difference. The retry count is kept in Redis, not taken from the
message: a job the sweeper re-drives arrives as a new message with
``retries = 0``. Arrival also registers the job for the sweeper, reads an
earlier result and, for a job with neither a result nor a poison count, runs
the ledger's first claim: one script, one reply. The job is read and the claim
built before it (`worker.service.StartService.handle`); what fails there is
decided, or raised, only after arrival.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import redis
from redis.commands.core import Script

from worker.delivery.inflight import REGISTRY_KEYS, InFlight
from worker.delivery.ledger_scripts import CLAIM
from worker.delivery.redis_batch import ScriptCall
from worker.keys import deliveries_key, result_key, retried_key
from worker.models import Result, compact_json

DELIVERY_COUNT_TTL = 86400
"""Seconds the per-job delivery counters are kept after the last delivery."""

_ARRIVE = f"""
local function claim(KEYS, ARGV)
{CLAIM}
end
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
-- lost with their worker: deliveries less this one and the planned retries (Celery's own
-- count, ARGV[8], still covers retries the service never saw: internal errors)
local lost = count - 1 - math.max(tonumber(retried or 0), tonumber(ARGV[8]))
local claimed = false
if #KEYS > 7 and not result and lost < tonumber(ARGV[9]) then
  -- the ledger's claim (its own script, as a function of keys 8- and arguments 10-)
  claimed = claim({{unpack(KEYS, 8)}}, {{unpack(ARGV, 10)}})
end
return {{result or false, lost, claimed}}
"""


@dataclass(frozen=True)
class Arrival:
    """What a delivery found on arrival."""

    existing: Result | None
    """The job's result, when it was decided before (a redelivery)."""
    lost: int
    """Deliveries of this job lost with their worker so far."""
    claim_reply: list[Any] | None = None
    """The claim's raw reply, when one was asked for and run (`ClaimCall.read`)."""


@dataclass(frozen=True)
class Deliveries:
    client: redis.Redis
    inflight: InFlight
    decide_within: float
    """Seconds after which the sweeper re-drives a job nobody decided."""

    def arrive(
        self,
        job_id: str,
        raw_job: Any,
        retries: int,
        holder: str,
        encoded: str | None = None,
        claim: ScriptCall | None = None,
        max_deliveries: int = 0,
    ) -> Arrival:
        """Count and register this delivery, and read an earlier result: one script.

        ``encoded``: a dict ``raw_job`` as `worker.models.compact_json` made it already.
        ``claim``: the script of the ledger's claim for the job (`ClaimCall.script`
        in `worker.delivery.ledger`), run in the same script when the job has no
        result and fewer than ``max_deliveries`` deliveries were lost: one round
        trip fewer per start.
        """
        tracked = isinstance(raw_job, dict)
        if tracked and encoded is None:
            encoded = compact_json(raw_job)
        now = time.time()
        keys = [result_key(job_id), deliveries_key(job_id), retried_key(job_id), *REGISTRY_KEYS]
        args: list[Any] = [
            DELIVERY_COUNT_TTL,
            "1" if tracked else "0",
            job_id,
            encoded or "",
            now + self.decide_within,
            holder,
            now,
            retries,
            max_deliveries,
        ]
        if claim is not None:
            keys += claim.keys
            args += claim.args
        raw_result, lost, claimed = ScriptCall(self._arrive, keys, args).run()
        existing = Result.model_validate_json(raw_result) if raw_result else None
        return Arrival(existing, int(lost), claimed or None)

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
