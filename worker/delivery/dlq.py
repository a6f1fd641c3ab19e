"""The dead-letter store: jobs a person has to look at.

A job lands here when its retries are exhausted, when its outcome is
ambiguous on an engine that cannot be searched (Blueworks, TAS), or when it
keeps killing workers. Entries keep the original job, so a replay reuses its
idempotency key; `worker.delivery.settle` makes sure a replay looks up before it sends,
even after the ledger has forgotten the key. Entries older than
``STARTPROC_DLQ_RETENTION_DAYS`` are removed by the sweeper.

Entries are counted by kind (``exhausted``, ``ambiguous``) in a small hash
kept in step by the same Lua script that adds or removes an entry, so the
metrics read the counts in one command however large the store grows.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import redis

from worker import keys

KINDS = ("exhausted", "ambiguous")
OTHER = "other"
RECOUNT_LIMIT = 10_000

# KEYS: entries, order, counts. ARGV: job id, entry JSON, time, kind.
_KIND_OF = """
local function kind_of(raw)
  local ok, entry = pcall(cjson.decode, raw)
  local kind = ok and type(entry) == 'table' and (entry['kind'] or entry['reason'])
  if kind == 'exhausted' or kind == 'ambiguous' then return kind end
  return 'other'
end
"""

_ADD = (
    _KIND_OF
    + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then redis.call('HINCRBY', KEYS[3], kind_of(old), -1) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
return old and 0 or 1
"""
)

# KEYS: entries, order, counts. ARGV: job id.
_REMOVE = (
    _KIND_OF
    + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if not old then return 0 end
local kind = kind_of(old)
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HINCRBY', KEYS[3], kind, -1) <= 0 then redis.call('HDEL', KEYS[3], kind) end
return 1
"""
)


def kind_of(reason: str) -> str:
    """The label an entry is counted under: a known kind, else ``other`` (bounded labels)."""
    return reason if reason in KINDS else OTHER


class DeadLetters:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)

    @property
    def _keys(self) -> list[str]:
        return [keys.DLQ, keys.DLQ_ORDER, keys.DLQ_KINDS]

    def add(self, job_id: str, job: Any, reason: str, error: dict[str, Any] | None) -> None:
        now = time.time()
        entry = {
            "job_id": job_id,
            "job": job,
            "reason": reason,
            "kind": kind_of(reason),
            "error": error,
            "at": now,
        }
        self._add(
            keys=self._keys, args=[job_id, json.dumps(entry, default=str), now, entry["kind"]]
        )

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        ids: list[str] = self.client.zrange(keys.DLQ_ORDER, 0, limit - 1)  # type: ignore[assignment]
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
        order = keys.DLQ_ORDER
        found: Any = self.client.zrangebyscore(order, "-inf", before, start=0, num=limit)
        ids = tuple(str(job_id) for job_id in found)
        for job_id in ids:  # one script each: the counts by kind stay in step
            self.remove(job_id)
        return ids

    def remove(self, job_id: str) -> bool:
        return bool(self._remove(keys=self._keys, args=[job_id]))

    def size(self) -> int:
        return int(self.client.hlen(keys.DLQ))

    def by_kind(self, recount_limit: int = RECOUNT_LIMIT) -> dict[str, int]:
        """Entries per kind, from the counts the scripts keep: two commands.

        Counts that do not add up to the store's size (entries written before
        they were counted) are rebuilt once by reading the entries, when there
        are at most ``recount_limit``; above that the difference is ``other``.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.hlen(keys.DLQ)
        pipe.hgetall(keys.DLQ_KINDS)
        size, raw = pipe.execute()
        counts = {kind: int(count) for kind, count in raw.items() if int(count) > 0}
        if sum(counts.values()) == size:
            return counts
        if size <= recount_limit:
            return self.recount()
        counts[OTHER] = counts.get(OTHER, 0) + max(size - sum(counts.values()), 0)
        return counts

    def recount(self) -> dict[str, int]:
        """Count the entries by kind again and store the counts (a WATCHed transaction)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.watch(keys.DLQ)  # type: ignore[no-untyped-call]
            counts: dict[str, int] = {}
            for _job_id, raw in pipe.hscan_iter(keys.DLQ, count=1000):
                entry = json.loads(raw)
                kind = kind_of(str(entry.get("kind") or entry.get("reason")))
                counts[kind] = counts.get(kind, 0) + 1
            pipe.multi()
            pipe.delete(keys.DLQ_KINDS)
            if counts:
                pipe.hset(keys.DLQ_KINDS, mapping=counts)  # type: ignore[arg-type]
            with contextlib.suppress(redis.WatchError):  # changed meanwhile: counted next time
                pipe.execute()
        return counts

    def purge(self) -> int:
        pipe = self.client.pipeline(transaction=True)
        pipe.hlen(keys.DLQ)
        pipe.delete(keys.DLQ, keys.DLQ_ORDER, keys.DLQ_KINDS)
        count, _ = pipe.execute()
        return int(count)


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
