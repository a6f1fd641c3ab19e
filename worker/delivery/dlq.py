"""The dead-letter store: jobs a person has to look at.

A job lands here when its retries are exhausted, when its outcome is
ambiguous on an engine that cannot be searched (Blueworks, TAS), or when it
keeps killing workers. Entries keep the original job, so a replay reuses its
idempotency key; `worker.delivery.settle` makes sure a replay looks up before it sends,
even after the ledger has forgotten the key. Entries older than
``STARTPROC_DLQ_RETENTION_DAYS`` are removed by the sweeper.
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

    def mark(self, job_id: str, **fields: Any) -> dict[str, Any] | None:
        """Add ``fields`` to an entry (a person's resolution); None when there is no entry."""
        entry = self.get(job_id)
        if entry is None:
            return None
        entry.update(fields)
        self.client.hset(keys.DLQ, job_id, json.dumps(entry, default=str))
        return entry

    def expire(self, before: float, limit: int = 500) -> tuple[str, ...]:
        """Remove entries dead-lettered before ``before`` (Unix time); their job ids."""
        order = f"{keys.DLQ}:order"
        found: Any = self.client.zrangebyscore(order, "-inf", before, start=0, num=limit)
        ids = tuple(str(job_id) for job_id in found)
        if ids:
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(keys.DLQ, *ids)
            pipe.zrem(order, *ids)
            pipe.execute()
        return ids

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


# ---------------------------------------------------------------- settled by a person
# (the settling itself is `worker.delivery.settle`'s, for the CLI and the console alike)

RESOLVED = f"{keys.DLQ}:resolved"


def _client(client: redis.Redis | None) -> redis.Redis:
    if client is not None:
        return client
    from worker.broker.connections import shared_redis
    from worker.config import settings

    return shared_redis(settings().require_redis())


def remember_resolution(
    client: redis.Redis,
    job_id: str,
    outcome: str,
    instance_id: str | None,
    by: str | None,
    entry: dict[str, Any],
) -> None:
    """Keep how a person settled the job's dead letter, for the job's page."""
    record = {
        "job_id": job_id,
        "resolution": outcome,
        "instance_id": instance_id,
        "by": by,
        "at": time.time(),
        "entry": entry,
    }
    client.hset(RESOLVED, job_id, json.dumps(record, default=str))


def resolution(job_id: str, client: redis.Redis | None = None) -> dict[str, Any] | None:
    """How a person resolved the job's dead letter, if they did."""
    raw = _client(client).hget(RESOLVED, job_id)
    return json.loads(str(raw)) if raw else None
