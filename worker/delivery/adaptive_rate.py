"""A target's shared start rate, adapted to the engine's backpressure (AIMD), in Redis.

``rate_limit`` is the ceiling. Every worker takes a token from one bucket
per target before each start (a tenth of a second's worth of burst, on
Redis' clock), so the engine sees one rate from all workers together. With
``adaptive_rate`` (the default) the bucket's rate follows the engine:

* **multiplicative decrease**: a 429, 503 or ``RESOURCE_EXHAUSTED`` halves it
  (down to a hundredth of the ceiling). Only once per round: a token carries
  the bucket's *epoch* (how often it was lowered), and a rejection of a
  request sent before the last decrease lowers nothing more, so sixteen
  threads meeting one overload halve the rate once, not sixteen times;
* **additive increase**: between rejections the rate climbs back toward the
  ceiling by the ceiling's worth each `RAMP_SECONDS`.

Both live in one Lua script (`_SCRIPT`), so all workers share one rate. An
idle target's state expires after `IDLE_SECONDS` (it starts at the ceiling
again). `rate_gauge` reports the current rates to Prometheus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis
from prometheus_client.core import GaugeMetricFamily

from worker.keys import RATES, rate_key

RAMP_SECONDS = 60.0
DECREASE = 0.5
FLOOR_FRACTION = 0.01
IDLE_SECONDS = 600

_SCRIPT = f"""
local key, index = KEYS[1], KEYS[2]
local op, ceiling, adaptive = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local now = tonumber(ARGV[5])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local s = redis.call('HMGET', key, 'tokens', 'ts', 'rate', 'epoch', 'changed')
local rate = tonumber(s[3]) or ceiling
local epoch = tonumber(s[4]) or 0
local changed = tonumber(s[5]) or now
if not adaptive then
  rate = ceiling
elseif rate < ceiling then
  rate = rate + ceiling / {RAMP_SECONDS * 1000} * math.max(0, now - changed)
end
rate = math.min(rate, ceiling)
local burst = math.max(1, math.ceil(rate * 100))
local tokens = tonumber(s[1]) or burst
local ts = tonumber(s[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if op == 'take' then
  if tokens >= 1 then
    tokens = tokens - 1
  else
    wait = math.ceil((1 - tokens) / rate)
  end
elseif adaptive and tonumber(ARGV[4]) == epoch then
  rate = math.max(ceiling * {FLOOR_FRACTION}, rate * {DECREASE})
  epoch = epoch + 1
  tokens = math.min(tokens, math.max(1, math.ceil(rate * 100)))
end
redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', now, 'rate', tostring(rate),
           'epoch', epoch, 'changed', now)
redis.call('PEXPIRE', key, {IDLE_SECONDS * 1000})
redis.call('SADD', index, ARGV[6])
return {{wait, tostring(rate * 1000), epoch}}
"""


@dataclass(frozen=True)
class Grant:
    """A token (``wait`` 0) or how long to wait for one; the bucket's rate and epoch."""

    wait: float
    rate: float
    epoch: int


class SharedRate:
    """The per-target buckets in Redis; one instance per process, shared by threads."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_SCRIPT)

    def take(self, target: str, per_ms: float, adaptive: bool, now_ms: int | None = None) -> Grant:
        """A token for one request to ``target`` (``per_ms``: the ceiling, tokens per ms)."""
        return self._call("take", target, per_ms, adaptive, 0, now_ms)

    def slow_down(
        self, target: str, per_ms: float, epoch: int, now_ms: int | None = None
    ) -> Grant:
        """The engine pushed back on a request sent under ``epoch``: halve, once per epoch."""
        return self._call("slow", target, per_ms, True, epoch, now_ms)

    def _call(
        self, op: str, target: str, per_ms: float, adaptive: bool, epoch: int,
        now_ms: int | None,
    ) -> Grant:
        wait, rate, current = self._script(
            keys=[rate_key(target), RATES],
            args=[op, per_ms, int(adaptive), epoch, "" if now_ms is None else now_ms, target],
        )
        return Grant(int(wait) / 1000.0, float(rate), int(current))


def rate_gauge(client: redis.Redis) -> GaugeMetricFamily:
    """``startproc_target_rate_per_second``: each limited target's current shared rate."""
    family = GaugeMetricFamily(
        "startproc_target_rate_per_second",
        "Start requests per second the target's shared bucket allows now (the rate_limit "
        "ceiling, lowered by the engine's backpressure when adaptive).",
        labels=["target"],
    )
    targets = sorted(_text(t) for t in client.smembers(RATES))
    pipe = client.pipeline(transaction=False)
    for target in targets:
        pipe.hget(rate_key(target), "rate")
    for target, rate in zip(targets, pipe.execute(), strict=True):
        if rate is not None and math.isfinite(float(rate)):
            family.add_metric([target], float(rate) * 1000.0)
    return family


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
