"""kombu's Redis transports, minus one client object per acknowledgement, plus a fix.

kombu's ``Channel.conn_or_acquire`` builds a new ``redis.Redis`` for every
synchronous command group: each delivery's unacked-registration, each ack,
each publish. The connections come from the channel's pool either way, but
constructing the client object itself costs about 0.14 ms of CPU with
redis-py 8 (it fills a dict of ~200 response callbacks), two or three times per
job: 5-7 % of a worker's CPU per start (benchmarks/README.md).

A ``redis.Redis`` is safe to share between threads (every command checks a
connection out of the pool), so one per channel and pool is enough. ``redis://``
URLs use `Transport`, ``sentinel://`` ones `SentinelTransport`; ``rediss://``
keeps kombu's own (kombu checks its TLS options by that scheme name).

The fix: when a worker loses the broker, Celery closes the old connection and
its channels after kombu has already dropped the connection's details, and a
channel's close then tries to build a connection pool from them to restore its
unacknowledged messages: an ``AttributeError`` that Celery takes for an
"Unrecoverable error" and stops the worker (seen on every Sentinel failover).
Here that attempt is a connection error, which kombu ignores on close; the
messages stay in Redis' unacked index, and the broker's visibility timeout
(or the sweeper) hands them out again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

TRANSPORT = "worker.broker.kombu_redis:Transport"
SENTINEL_TRANSPORT = "worker.broker.kombu_redis:SentinelTransport"


def transport_for(url: str | None) -> str | None:
    """Ours for plain Redis and Sentinel broker URLs; None (kombu's choice) for anything else."""
    text = (url or "").lower()
    if text.startswith("redis://"):
        return TRANSPORT
    if text.startswith("sentinel://"):
        return SENTINEL_TRANSPORT
    return None


class _Ours:
    """What both channels add to kombu's (a mixin: first in the bases)."""

    _shared_client: Any = None
    connection: Any
    pool: Any

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:  # the pool is reset on close
            shared = self._shared_client = self._create_client()  # type: ignore[attr-defined]
        yield shared

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:  # closed after a lost connection: see the docstring
            raise redis.ConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous)  # type: ignore[misc]


class Channel(_Ours, kombu_redis.Channel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(_Ours, kombu_redis.SentinelChannel):
    pass


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
