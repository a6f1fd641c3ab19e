"""The shared token bucket: parsing, bursts, waits, and the limit seen by the engine."""

from __future__ import annotations

import pytest
import redis

from worker.delivery.ratelimit import RateLimiter, per_millisecond


@pytest.mark.parametrize(
    ("spec", "rate"), [("50/s", 0.05), ("60/m", 0.001), ("3600/h", 0.001), ("0.5/s", 0.0005)]
)
def test_specs(spec: str, rate: float) -> None:
    assert per_millisecond(spec) == pytest.approx(rate)


@pytest.mark.parametrize("spec", ["50", "fast", "0/s", "5/d"])
def test_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        per_millisecond(spec)


def test_burst_then_waits(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client)
    waits = [limiter.acquire("t", "100/s") for _ in range(40)]
    assert waits[:10] == [0.0] * 10  # a full bucket: a tenth of a second's worth
    assert any(w > 0 for w in waits[10:])  # 40 calls take far less than 0.3 s
    assert all(w <= 0.01 for w in waits)  # never more than one token's refill time


def test_a_second_call_waits_about_one_interval(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client)
    assert limiter.acquire("t", "10/s") == 0.0
    assert 0.05 < limiter.acquire("t", "10/s") <= 0.1


def test_slow_limits_ask_for_long_waits(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client)
    assert limiter.acquire("slow", "1/m") == 0.0
    assert 59 <= limiter.acquire("slow", "1/m") <= 60


def test_targets_have_separate_buckets(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client)
    assert limiter.acquire("a", "1/h") == 0.0
    assert limiter.acquire("b", "1/h") == 0.0
