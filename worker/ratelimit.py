"""Per-target rate limits shared by every worker: a token bucket in Redis.

``rate_limit = "50/s"`` on a target means the engine sees at most 50 start
requests per second from all workers together. The bucket holds a tenth of
a second's worth of tokens (at least one), so bursts stay small, and it runs
on Redis' own clock (``TIME``), so workers on different hosts agree. A job
over the limit is not failed: the caller gets the wait and retries later.
"""

from __future__ import annotations

import math
import re

import redis

from worker.keys import PREFIX

_BUCKET = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 60000)
return wait
"""
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_SPEC = re.compile(r"^(\d+(?:\.\d+)?)/([smh])$")


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
    def __init__(self, client: redis.Redis) -> None:
        self._bucket = client.register_script(_BUCKET)

    def acquire(self, target: str, spec: str) -> float:
        """Take a token for one request to ``target``; seconds to wait first if none is left."""
        rate = per_millisecond(spec)
        burst = max(1.0, math.ceil(rate * 100))  # a tenth of a second's worth
        wait_ms = self._bucket(keys=[f"{PREFIX}:rate:{target}"], args=[rate, burst])
        return int(wait_ms) / 1000.0
