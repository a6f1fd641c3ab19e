"""Which workers are alive: each worker writes a beacon to Redis every few seconds.

One beacon per worker serves both readers: the console's list of live workers
and the metrics' ``startproc_workers_alive`` / heartbeat age (the "no worker"
alert, `worker.delivery.backlog`). Scores are the Redis server's clock, so
worker hosts with skewed clocks still compare. (`worker.delivery.liveness` is
another thing: per-process keys with a TTL that the sweeper and the ledger use
to take a dead holder's jobs over.)

The console (and anything else that only has Redis) reads them without
Celery: asking the workers themselves (``celery inspect ping``) needs a
Celery app, a broadcast over the broker and a reply timeout on every page
view, and Celery's own event heartbeats only exist with ``-E`` and need an
event consumer. A beacon is one ZADD into ``startproc:workers`` (member
``hostname``, score = the server's Unix time) plus a small JSON description,
so a worker that died simply stops being fresh; stale members are dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from worker import keys

INTERVAL = 10.0  # seconds between beacons
FRESH = 3 * INTERVAL  # a worker whose last beacon is older is not alive (also for the metrics)
FORGET = 3600.0  # stale members older than this are removed on read
INFO = f"{keys.WORKERS}:info"


@dataclass(frozen=True)
class LiveWorker:
    name: str
    seen: float
    info: dict[str, Any]
    now: float
    """The server's time when this was read: ``age`` is on one clock."""

    @property
    def age(self) -> float:
        return max(self.now - self.seen, 0.0)


def server_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1e6


def beacon(client: redis.Redis, name: str, info: dict[str, Any]) -> None:
    """One beacon on the server's clock; names silent for `FORGET` go in the same round trip."""
    now = server_now(client)
    pipe = client.pipeline(transaction=False)
    pipe.zadd(keys.WORKERS, {name: now})
    pipe.hset(INFO, name, json.dumps(info))
    pipe.zremrangebyscore(keys.WORKERS, "-inf", now - FORGET)
    pipe.execute()


def forget(client: redis.Redis, name: str) -> None:
    """A worker shutting down cleanly leaves at once instead of fading out."""
    pipe = client.pipeline(transaction=False)
    pipe.zrem(keys.WORKERS, name)
    pipe.hdel(INFO, name)
    pipe.execute()


def live_workers(client: redis.Redis, fresh: float = FRESH) -> list[LiveWorker]:
    now = server_now(client)
    pipe = client.pipeline(transaction=False)
    pipe.zremrangebyscore(keys.WORKERS, "-inf", now - FORGET)
    pipe.zrangebyscore(keys.WORKERS, now - fresh, "+inf", withscores=True)
    pipe.hgetall(INFO)
    _, members, infos = pipe.execute()
    return [
        LiveWorker(str(name), float(seen), _info(infos.get(name)), now) for name, seen in members
    ]


def _info(raw: Any) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Beacon:
    """A daemon thread sending this process's beacon until `stop`."""

    def __init__(self, client: redis.Redis, name: str, info: dict[str, Any]) -> None:
        self.client = client
        self.name = name
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), **info}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="startproc-beacon", daemon=True)

    def start(self) -> Beacon:
        self.info["started_at"] = time.time()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            # Redis away: the worker is not "alive" to readers until it is back
            with contextlib.suppress(redis.RedisError):
                beacon(self.client, self.name, self.info)
            self._stop.wait(INTERVAL)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):
            forget(self.client, self.name)
