"""kombu's Redis transport, minus one client object per acknowledgement.

kombu's ``Channel.conn_or_acquire`` builds a new ``redis.Redis`` for every
synchronous command group: each delivery's unacked-registration, each ack,
each publish. The connections come from the channel's pool either way, but
constructing the client object itself costs about 0.14 ms of CPU with
redis-py 8 (it fills a dict of ~200 response callbacks), two or three times per
job: 5-7 % of a worker's CPU per start (benchmarks/README.md).

A ``redis.Redis`` is safe to share between threads (every command checks a
connection out of the pool), so one per channel and pool is enough. Only
``redis://`` URLs use it: ``rediss://`` (kombu checks its TLS options by that
scheme name) and Sentinel keep kombu's own transport.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

TRANSPORT = "worker.broker.kombu_redis:Transport"


def transport_for(url: str | None) -> str | None:
    """This transport for plain Redis broker URLs; None (kombu's choice) for anything else."""
    return TRANSPORT if (url or "").startswith("redis://") else None


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:  # the pool is reset on close
            shared = self._shared_client = self._create_client()  # type: ignore[no-untyped-call]
        yield shared


class Transport(kombu_redis.Transport):
    Channel = Channel
