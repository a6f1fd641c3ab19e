"""The dead-letter store: jobs a person has to look at.

A job lands here when its retries are exhausted, when its outcome is
ambiguous on an engine that cannot be searched (Blueworks, TAS), or when it
keeps killing workers. Entries keep the original job, so a replay reuses its
idempotency key and can never double-start what did get created.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from worker import keys


class DeadLetters:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def add(self, job_id: str, job: Any, reason: str, error: dict[str, Any] | None) -> None:
        entry = {"job_id": job_id, "job": job, "reason": reason, "error": error, "at": time.time()}
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(keys.DLQ, job_id, json.dumps(entry, default=str))
        pipe.zadd(f"{keys.DLQ}:order", {job_id: entry["at"]})
        pipe.execute()

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        ids: list[str] = self.client.zrange(f"{keys.DLQ}:order", 0, limit - 1)  # type: ignore[assignment]
        raws: list[str | None] = self.client.hmget(keys.DLQ, ids) if ids else []  # type: ignore[assignment]
        return [json.loads(r) for r in raws if r]

    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.client.hget(keys.DLQ, job_id)
        return json.loads(str(raw)) if raw else None

    def remove(self, job_id: str) -> bool:
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(keys.DLQ, job_id)
        pipe.zrem(f"{keys.DLQ}:order", job_id)
        removed, _ = pipe.execute()
        return bool(removed)

    def size(self) -> int:
        return int(self.client.hlen(keys.DLQ))

    def purge(self) -> int:
        count = self.size()
        self.client.delete(keys.DLQ, f"{keys.DLQ}:order")
        return count


# ---------------------------------------------------------------- settling by hand
# resolve / delete / replay as functions, for the console. (The CLI's `dlq resolve`
# and `dlq delete` are being added on another branch with these names and meanings.)

RESOLVED = f"{keys.DLQ}:resolved"

_SETTLE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'none' end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lease_until = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or 0)
if state == 'IN_FLIGHT' and lease_until > now then return 'busy' end
if ARGV[1] == 'created' then
  if state == 'SUCCEEDED' and redis.call('HGET', KEYS[1], 'instance_id') ~= ARGV[2] then
    return 'other:' .. (redis.call('HGET', KEYS[1], 'instance_id') or '')
  end
  redis.call('HSET', KEYS[1], 'state', 'SUCCEEDED', 'instance_id', ARGV[2], 'lease_until', 0)
else
  if state == 'SUCCEEDED' then
    return 'other:' .. (redis.call('HGET', KEYS[1], 'instance_id') or '')
  end
  redis.call('HSET', KEYS[1], 'state', 'RELEASED', 'lease_until', 0)
  redis.call('HDEL', KEYS[1], 'lost_send', 'sent_fence')
end
return 'ok'
"""


def _client(client: redis.Redis | None) -> redis.Redis:
    if client is not None:
        return client
    from worker.config import settings
    from worker.connections import shared_redis

    return shared_redis(settings().require_redis())


def job_key(job_id: str, job: dict[str, Any]) -> tuple[str, str]:
    """(target, idempotency key) of a dead-lettered job, derived as the worker derived it."""
    return str(job["target"]), keys.idempotency_key(
        target=str(job["target"]),
        process=str(job["process"]),
        explicit=job.get("idempotency_key"),
        business_key=job.get("business_key"),
        job_id=job_id,
    )


def resolve(
    job_id: str,
    created_instance_id: str | None = None,
    *,
    not_created: bool = False,
    by: str | None = None,
    client: redis.Redis | None = None,
) -> dict[str, Any]:
    """A person settled the job: the instance exists (its id) or was never created.

    The ledger learns it, so the key's next job is a ``duplicate`` of that
    instance (created) or is sent without reconciling first (not created);
    the entry leaves the store, and the resolution is kept for the job's page.
    Raises KeyError (no such dead letter) or ValueError (bad arguments, or
    the ledger disagrees: a worker holds the key, or it records another instance).
    """
    if (created_instance_id is None) == (not not_created):
        raise ValueError("give either created_instance_id or not_created=True")
    if created_instance_id is not None and not created_instance_id.strip():
        raise ValueError("the instance id is empty")
    store = DeadLetters(_client(client))
    entry = store.get(job_id)
    if entry is None:
        raise KeyError(job_id)
    job = entry.get("job")
    outcome = "created" if created_instance_id is not None else "not_created"
    if isinstance(job, dict) and job.get("target") and job.get("process"):
        target, key = job_key(job_id, job)
        answer = str(
            store.client.eval(
                _SETTLE,
                1,
                keys.ledger_key(target, key),
                outcome,
                (created_instance_id or "").strip(),
            )
        )
        if answer == "busy":
            raise ValueError("a worker holds this job's key right now; try again in a minute")
        if answer.startswith("other:"):
            raise ValueError(f"the ledger records instance {answer[6:]!r} for this job's key")
    resolution = {
        "job_id": job_id,
        "resolution": outcome,
        "instance_id": (created_instance_id or "").strip() or None,
        "by": by,
        "at": time.time(),
        "entry": entry,
    }
    pipe = store.client.pipeline(transaction=True)
    pipe.hset(RESOLVED, job_id, json.dumps(resolution, default=str))
    pipe.hdel(keys.DLQ, job_id)
    pipe.zrem(f"{keys.DLQ}:order", job_id)
    pipe.execute()
    return resolution


def resolution(job_id: str, client: redis.Redis | None = None) -> dict[str, Any] | None:
    """How a person resolved the job's dead letter, if they did."""
    raw = _client(client).hget(RESOLVED, job_id)
    return json.loads(str(raw)) if raw else None


def delete(job_id: str, client: redis.Redis | None = None) -> bool:
    """Drop the dead letter without settling anything; False when there was none."""
    return DeadLetters(_client(client)).remove(job_id)


def replay(job_id: str, client: redis.Redis | None = None, broker_url: str | None = None) -> str:
    """Enqueue the job again as a new job with the same idempotency key; the new job id.

    The key is what makes it safe: a job whose instance was created after
    all is answered ``duplicate``. Raises KeyError when there is no such entry.
    """
    from worker import producer

    store = DeadLetters(_client(client))
    entry = store.get(job_id)
    if entry is None:
        raise KeyError(job_id)
    job = dict(entry["job"])
    job["idempotency_key"] = job_key(job_id, job)[1]
    for name in ("job_id", "enqueued_at"):
        job.pop(name, None)
    new_id = producer.publish([producer.prepare(job)], broker_url)[0]
    store.remove(job_id)
    return new_id
