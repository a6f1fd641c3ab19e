"""Starts per target over the last minutes, read from per-minute counters in Redis.

`ResultStore.record` adds one to ``startproc:outcomes:<minute>`` (field
``target|status``) in the same script that records the result, so the
counts are exact, shared by every worker process, and cost one HINCRBY per
job. Reading an hour is one pipelined round trip of 60 small hashes: no scan
of the results log, whose length has nothing to do with an hour. The
Prometheus counters answer the same question for a scraper; these exist so
the console can answer it without one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from worker import keys

STATUSES = ("created", "duplicate", "failed")


@dataclass
class Counts:
    created: int = 0
    duplicate: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.created + self.duplicate + self.failed

    @property
    def error_ratio(self) -> float | None:
        """Failed share of the decided jobs; None when nothing was decided."""
        return self.failed / self.total if self.total else None

    def add(self, status: str, count: int) -> None:
        if status in STATUSES:
            setattr(self, status, getattr(self, status) + count)


@dataclass
class Windows:
    """Per target: the counts of the last ``short`` and ``long`` minutes (current one included)."""

    short_minutes: int
    long_minutes: int
    short: dict[str, Counts] = field(default_factory=dict)
    long: dict[str, Counts] = field(default_factory=dict)

    def targets(self) -> list[str]:
        return sorted(set(self.short) | set(self.long))


def read_windows(
    client: redis.Redis, short: int = 5, long: int = 60, now: float | None = None
) -> Windows:
    """Counts of the last ``short`` and ``long`` minutes, in one round trip."""
    minute = int((time.time() if now is None else now) // 60)
    pipe = client.pipeline(transaction=False)
    for back in range(long):
        pipe.hgetall(keys.outcomes_minute(minute - back))
    found = Windows(short, long)
    for back, counts in enumerate(pipe.execute()):
        for name, value in counts.items():
            target, _, status = str(name).rpartition("|")
            found.long.setdefault(target, Counts()).add(status, int(value))
            if back < short:
                found.short.setdefault(target, Counts()).add(status, int(value))
    return found
