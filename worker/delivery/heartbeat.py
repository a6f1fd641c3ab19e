"""A worker's heartbeat in Redis, so "no worker is alive" is a metric and an alert.

Each worker process writes its node name into one sorted set, scored by the
Redis server's clock, every `INTERVAL` seconds from a daemon thread, and
removes it when it shuts down cleanly. The metrics count the names that beat
recently and how old the newest beat is (`worker.delivery.backlog.workers`). A node
gone for a day is forgotten. Celery's own heartbeats travel as events to
whoever listens (Flower); these stay where a scrape can read them.
"""

from __future__ import annotations

import contextlib
import threading

import redis
import structlog

from worker import keys

INTERVAL = 15.0
ALIVE_WITHIN = 4 * INTERVAL
FORGET_AFTER = 86400

log = structlog.get_logger("worker.delivery.heartbeat")


class Heartbeat:
    def __init__(self, client: redis.Redis, node: str, interval: float = INTERVAL) -> None:
        self.client = client
        self.node = node
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """One beat, on the server's clock; old names are dropped in the same round trip."""
        seconds, micros = self.client.time()
        now = seconds + micros / 1e6
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(keys.WORKERS, {self.node: now})
        pipe.zremrangebyscore(keys.WORKERS, "-inf", now - FORGET_AFTER)
        pipe.execute()

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name="startproc-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except redis.RedisError as exc:  # Redis away: the missing beats are the signal
                log.warning("heartbeat.failed", error=type(exc).__name__)
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        """Stop beating and say goodbye (a worker stopped on purpose is not missed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):
            self.client.zrem(keys.WORKERS, self.node)
