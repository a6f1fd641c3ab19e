"""Redis clients, built one way everywhere (timeouts, health checks, reconnects)."""

from __future__ import annotations

from functools import lru_cache

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


def redis_client(url: str) -> redis.Redis:
    """A client that reconnects with backoff instead of failing on the first blip."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=6),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


@lru_cache(maxsize=8)
def shared_redis(url: str) -> redis.Redis:
    """One pooled client per URL per process."""
    return redis_client(url)
