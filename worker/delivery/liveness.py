"""Worker liveness: a heartbeat key per worker process, so a dead one is noticed in seconds.

A threads-pool worker that dies mid-call leaves its jobs unacknowledged in a
Redis broker until the visibility timeout (an hour) and its ledger leases
held until they run out. Each process that runs jobs therefore keeps the key
``startproc:alive:<host>:<pid>`` alive: written with a TTL of
``STARTPROC_LIVENESS_TTL`` seconds and refreshed by a daemon thread four
times per TTL. In-flight entries and ledger claims name that holder; once its
key has expired, the sweeper re-drives its jobs and a claim may take its
lease over (after its last attempt is surely over, see `worker.delivery.ledger`).

The identity is made per process: a prefork child gets its own (and its own
thread) on first use after the fork, since threads do not survive a fork.
Correctness never depends on it: a live worker whose key lapsed loses only
what a lease that ran out would lose, and the fence and the reconcile-first
takeover cover both.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import redis
import structlog

from worker.keys import alive_key

log = structlog.get_logger("worker.delivery.liveness")


def identity() -> str:
    """This process as a holder: host name and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Liveness:
    """This process's heartbeat. Thread-safe; starts itself on first use."""

    def __init__(self, client: redis.Redis, ttl: float, name: str = "") -> None:
        """``name``: a fixed holder id instead of host:pid (several heartbeats in one test)."""
        self.client = client
        self.ttl = ttl
        self.name = name
        self._lock = threading.Lock()
        self._pid = 0
        self._holder = ""
        self._stop = threading.Event()

    def holder(self) -> str:
        """This process's holder id, its key written and its heartbeat running."""
        if self._pid == os.getpid():
            return self._holder
        with self._lock:
            if self._pid != os.getpid():  # first use, or the first in a forked child
                self._holder = self.name or identity()
                self._stop = threading.Event()
                self.beat()
                thread = threading.Thread(
                    target=self._run, args=(self._holder, self._stop), daemon=True
                )
                thread.name = "startproc-liveness"
                thread.start()
                self._pid = os.getpid()
        return self._holder

    def beat(self, holder: str | None = None) -> None:
        """Write the key once (the thread does this every quarter TTL)."""
        name = alive_key(holder or self._holder)
        self.client.set(name, str(time.time()), px=int(self.ttl * 1000))

    def stop(self) -> None:
        """Stop the heartbeat and delete the key (a clean exit: its jobs are done)."""
        self._stop.set()
        if self._holder and self._pid == os.getpid():
            self.client.delete(alive_key(self._holder))
        self._pid = 0

    def _run(self, holder: str, stop: threading.Event) -> None:
        while not stop.wait(self.ttl / 4):
            try:
                self.beat(holder)
            except Exception as exc:  # Redis away: the next beat tries again
                log.warning("liveness.beat_failed", holder=holder, error=type(exc).__name__)
