"""Jobs the worker has seen but not decided: the sweeper's safety net.

Celery's own mechanisms bring a job back after most failures (late acks,
redelivery on worker loss). This registry covers the rest: a retry that
could not be re-published because the broker was down, a message lost with
a Redis that restarted without its data, a threads-pool worker that died
while the broker's visibility timeout is still hours away. Each job is
registered with a deadline when a worker takes it and removed when its
result is recorded; the sweeper re-enqueues jobs past their deadline. That
is always safe: the ledger and the results index make a second copy of a
job a no-op.

A job a worker is running also names its holder (`worker.delivery.liveness`): when
that worker's heartbeat key has expired, the sweeper re-drives the job at
once instead of waiting for its deadline.

Apart from that registry, arrival (`worker.delivery.deliveries`) notes when a
worker first took a job (kept across retries and re-drives until the job is
decided): the in-flight count
and the age of the oldest job in flight that the metrics show.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import redis
from redis.client import Pipeline

from worker.delivery.redis_batch import Batch, ScriptCall, by_size
from worker.keys import (
    INFLIGHT,
    INFLIGHT_DEADLINES,
    INFLIGHT_HOLDERS,
    INFLIGHT_RUNNING,
    alive_key,
)
from worker.models import compact_json

REGISTRY_KEYS = (INFLIGHT, INFLIGHT_DEADLINES, INFLIGHT_HOLDERS, INFLIGHT_RUNNING)
"""The registry's keys, in the order its scripts (and arrival's) take them."""
_FORGET = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"""

_DISOWN = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


class InFlight:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._disown = client.register_script(_DISOWN)
        self._forget = client.register_script(_FORGET)

    def track(
        self,
        job_id: str,
        job: Any,
        deadline: float,
        pipe: Pipeline | None = None,
        holder: str | None = None,
    ) -> None:
        """Register (or move the deadline of) a job; into ``pipe`` when given.

        ``holder``: the worker process now running it; ``""``: nobody runs it
        now (a planned retry waits in the broker); None leaves that as it was.
        (A worker's arrival registers its job in its own script, `worker.delivery.deliveries`.)
        """
        own = pipe is None
        pipe = self.client.pipeline(transaction=True) if pipe is None else pipe
        pipe.hset(INFLIGHT, job_id, compact_json(job))
        pipe.zadd(INFLIGHT_DEADLINES, {job_id: deadline})
        if holder:
            pipe.hset(INFLIGHT_HOLDERS, job_id, holder)
        elif holder == "":
            pipe.hdel(INFLIGHT_HOLDERS, job_id)
        if own:
            pipe.execute()

    def note(self, job_id: str, job: Any, pipe: Pipeline) -> None:
        """Register a job without a deadline: known (``startproc status``), never re-driven."""
        pipe.hset(INFLIGHT, job_id, compact_json(job))

    def track_many(
        self, payloads: Mapping[str, str | bytes], deadline: float, pipe: Pipeline
    ) -> None:
        """`track` (no holder) for serialized jobs, job id -> JSON: one HSET, one ZADD."""
        self.note_many(payloads, pipe)
        pipe.zadd(INFLIGHT_DEADLINES, dict.fromkeys(payloads, deadline))

    def note_many(self, payloads: Mapping[str, str | bytes], pipe: Pipeline) -> None:
        """`note` for serialized jobs, job id -> JSON: one HSET (per 4 MB of jobs)."""
        for group in by_size(list(payloads.items()), lambda item: len(item[1])):
            values: dict[Any, Any] = dict(group)
            pipe.hset(INFLIGHT, mapping=values)

    def done(self, job_id: str, batch: Batch | None = None) -> None:
        """Forget a decided job; into ``batch`` when given (every step is idempotent)."""
        own = Batch(self.client) if batch is None else batch
        own.script(ScriptCall(self._forget, REGISTRY_KEYS, [job_id]))
        if batch is None:
            own.execute()

    def overdue(self, now: float | None = None, limit: int = 500) -> list[tuple[str, Any]]:
        """Jobs whose deadline passed, with their last known payload."""
        now = time.time() if now is None else now
        ids: list[str] = self.client.zrangebyscore(  # type: ignore[assignment]
            INFLIGHT_DEADLINES, "-inf", now, start=0, num=limit
        )
        if not ids:
            return []
        raws: list[str | None] = self.client.hmget(INFLIGHT, ids)  # type: ignore[assignment]
        return [(job_id, json.loads(raw)) for job_id, raw in zip(ids, raws, strict=True) if raw]

    def orphans(self, limit: int = 500) -> list[tuple[str, str, Any]]:
        """Jobs whose holder's heartbeat expired: (job id, holder, last payload or None).

        The holders map has one entry per job being run right now (about the
        workers' total concurrency), so reading it whole each sweep is cheap.
        """
        held: dict[str, str] = self.client.hgetall(INFLIGHT_HOLDERS)  # type: ignore[assignment]
        if not held:
            return []
        holders = sorted(set(held.values()))
        pipe = self.client.pipeline(transaction=False)
        for holder in holders:
            pipe.exists(alive_key(holder))
        dead = {h for h, alive in zip(holders, pipe.execute(), strict=True) if not alive}
        ids = [job_id for job_id, holder in held.items() if holder in dead][:limit]
        if not ids:
            return []
        raws: list[str | None] = self.client.hmget(INFLIGHT, ids)  # type: ignore[assignment]
        return [
            (job_id, held[job_id], json.loads(raw) if raw else None)
            for job_id, raw in zip(ids, raws, strict=True)
        ]

    def disown(self, job_id: str, holder: str) -> bool:
        """Drop the job's holder if it is still ``holder`` (a new one may have taken it)."""
        return bool(self._disown(keys=[INFLIGHT_HOLDERS], args=[job_id, holder]))

    def size(self) -> int:
        return int(self.client.zcard(INFLIGHT_DEADLINES))

    def running(self) -> tuple[int, float | None]:
        """(jobs taken and not decided, when the oldest of them was first taken): 2 commands."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(INFLIGHT_RUNNING)
        pipe.zrange(INFLIGHT_RUNNING, 0, 0, withscores=True)
        count, oldest = pipe.execute()
        return int(count), (float(oldest[0][1]) if oldest else None)
