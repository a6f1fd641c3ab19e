"""Per-target rate limits shared by every worker: a token bucket in Redis.

``rate_limit = "50/s"`` on a target means the engine sees at most 50 start
requests per second from all workers together. The bucket holds a tenth of
a second's worth of tokens (at least one), so bursts stay small, and it runs
on Redis' own clock (``TIME``), so workers on different hosts agree. A job
over the limit is not failed: the caller gets the wait and retries later.
With ``adaptive_rate`` (the default) the bucket's rate follows the engine's
backpressure below that ceiling: `worker.delivery.adaptive_rate`, one Lua script for both.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import redis

from worker.delivery.adaptive_rate import Grant, SharedRate
from worker.errors import TransientError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_SPEC = re.compile(r"^(\d+(?:\.\d+)?)/([smh])$")


class RateLimited(TransientError):
    """The target's shared rate asks for a wait longer than an in-call pause."""


def per_millisecond(spec: str) -> float:
    """``"50/s"`` -> 0.05 tokens per millisecond."""
    match = _SPEC.match(spec)
    if not match:
        raise ValueError(f"rate_limit {spec!r}: expected N/s, N/m or N/h")
    count, unit = float(match.group(1)), match.group(2)
    if count <= 0:
        raise ValueError(f"rate_limit {spec!r}: must be positive")
    return count / (_UNITS[unit] * 1000.0)


class RateLimiter:
    """The target's shared bucket (`worker.delivery.adaptive_rate`), by its ``rate_limit`` spec."""

    def __init__(self, client: redis.Redis) -> None:
        self.shared = SharedRate(client)

    def acquire(self, target: str, spec: str) -> float:
        """Take a token for one request to ``target``; seconds to wait first if none is left."""
        return self.take(target, spec, adaptive=False).wait

    def take(self, target: str, spec: str, adaptive: bool) -> Grant:
        """A token (or the wait for one) at the current rate, with the bucket's epoch."""
        return self.shared.take(target, per_millisecond(spec), adaptive)

    def slow_down(self, target: str, spec: str, epoch: int) -> Grant:
        """The engine pushed back on a request sent under ``epoch``."""
        return self.shared.slow_down(target, per_millisecond(spec), epoch)

    def wait_for_token(
        self, target: str, spec: str, adaptive: bool, cap: float,
        sleep: Callable[[float], None],
    ) -> int:
        """Wait (up to ``cap`` seconds a time) for a token; `RateLimited` for a longer wait,
        which becomes a retry later. Returns the epoch a backpressure answer reports."""
        while True:
            grant = self.take(target, spec, adaptive)
            if grant.wait <= 0:
                return grant.epoch
            if grant.wait > cap:
                raise RateLimited(
                    f"rate limit of target reached ({grant.rate:.3g}/s now, at most {spec})",
                    retry_after=grant.wait,
                )
            sleep(grant.wait)
