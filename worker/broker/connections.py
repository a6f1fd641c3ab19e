"""Redis clients and broker connections, built one way everywhere.

Redis: timeouts, health checks, reconnects. The broker: publisher confirms on
RabbitMQ, so a message the broker did not take raises instead of vanishing.
"""

from __future__ import annotations

from functools import lru_cache

import redis
from kombu.connection import Connection
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from worker.broker.kombu_redis import transport_for


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


AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


def is_amqp(url: str | None) -> bool:
    return (url or "").startswith(AMQP_SCHEMES)


def broker_connection(url: str) -> Connection:
    """A kombu connection to the broker; on RabbitMQ with publisher confirms."""
    options = {"confirm_publish": True} if is_amqp(url) else {}
    return Connection(url, transport=transport_for(url), transport_options=options)


@lru_cache(maxsize=8)
def shared_broker_connection(url: str) -> Connection:
    """One broker connection per URL per process (producers publish through its pool)."""
    return broker_connection(url)
