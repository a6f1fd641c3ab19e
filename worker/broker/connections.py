"""Redis clients and broker connections, built one way everywhere.

Redis: timeouts, health checks, reconnects; a ``sentinel://`` URL gets a
client of the current master (`worker.broker.sentinel`). The broker: publisher
confirms on RabbitMQ, so a message the broker did not take raises instead of
vanishing; the master's name on Sentinel. Redis Cluster is refused at start
(`refuse_cluster`): the ledger's scripts touch keys of many hash slots.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import redis
import structlog
from kombu.connection import Connection
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from worker.broker import sentinel
from worker.broker.kombu_redis import transport_for
from worker.errors import ConfigError

if TYPE_CHECKING:
    from worker.config import Settings

PROBE_TIMEOUT = 2.0
log = structlog.get_logger("worker.broker.connections")


def redis_client(url: str, probe: bool = False) -> redis.Redis:
    """A client that reconnects with backoff instead of failing on the first blip.

    ``probe``: one that fails fast instead (health checks, scrapes, a CLI's
    first contact): short timeouts, no retries.
    """
    connect, read = (PROBE_TIMEOUT, PROBE_TIMEOUT * 2) if probe else (5.0, 30.0)
    if sentinel.is_sentinel(url):
        from worker.config import settings

        cfg = settings()
        password = cfg.sentinel_password.get_secret_value() if cfg.sentinel_password else None
        return sentinel.master_client(
            url,
            cfg.sentinel_master,
            password,
            connect_timeout=connect,
            socket_timeout=read,
            retries=0 if probe else sentinel.FAILOVER_RETRIES,
        )
    if probe:
        return redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=connect, socket_timeout=read
        )
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=connect,
        socket_timeout=read,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=6),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


@lru_cache(maxsize=8)
def shared_redis(url: str) -> redis.Redis:
    """One pooled client per URL per process."""
    return redis_client(url)


def refuse_cluster(client: redis.Redis, what: str) -> None:
    """`ConfigError` when ``client`` talks to a Redis Cluster node (checked once, at start).

    Every ledger, result and registry script touches several keys at once,
    which a cluster would scatter over hash slots (CROSSSLOT), and kombu's
    Redis transport has no cluster mode: Sentinel is the supported HA setup.
    """
    info: dict[str, Any] = client.info("cluster")
    if str(info.get("cluster_enabled", "0")) == "1":
        raise ConfigError(
            f"{what} is a Redis Cluster node: Redis Cluster is not supported (the ledger's "
            "scripts touch keys of several hash slots, and kombu has no cluster transport). "
            "Use a single Redis, or Redis Sentinel (sentinel://… and STARTPROC_SENTINEL_MASTER)."
        )


def refuse_redis_cluster(cfg: Settings) -> None:
    """`refuse_cluster` for the ledger's Redis and a Redis broker (a worker's start); a Redis
    not reachable yet is left to the clients' own retries."""
    ledger = cfg.effective_redis_url()
    broker = cfg.broker_url if not is_amqp(cfg.broker_url) else None
    for what, url in (("STARTPROC_REDIS_URL", ledger), ("the broker", broker)):
        if not url or (what == "the broker" and url == ledger):
            continue
        client = redis_client(url, probe=True)
        try:
            shown = ";".join(sentinel.redacted(part) for part in url.split(";"))
            refuse_cluster(client, f"{what} ({shown})")
        except redis.RedisError as exc:
            log.warning("redis.unreachable_at_start", error=str(exc))
        finally:
            client.close()


AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


def is_amqp(url: str | None) -> bool:
    return (url or "").startswith(AMQP_SCHEMES)


def broker_url_and_options(url: str) -> tuple[str, dict[str, Any]]:
    """The URL kombu reads and the transport options this broker needs."""
    if is_amqp(url):
        return url, {"confirm_publish": True}
    if sentinel.is_sentinel(url):
        from worker.config import settings

        cfg = settings()
        password = cfg.sentinel_password.get_secret_value() if cfg.sentinel_password else None
        options = sentinel.transport_options(cfg.sentinel_master, password)
        return sentinel.SentinelURL.parse(url).kombu_url(), options
    return url, {}


def broker_connection(url: str) -> Connection:
    """A kombu connection to the broker; on RabbitMQ with publisher confirms."""
    kombu_url, options = broker_url_and_options(url)
    return Connection(kombu_url, transport=transport_for(url), transport_options=options)


@lru_cache(maxsize=8)
def shared_broker_connection(url: str) -> Connection:
    """One broker connection per URL per process (producers publish through its pool)."""
    return broker_connection(url)

