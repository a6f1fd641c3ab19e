"""Redis Sentinel: ``sentinel://`` URLs for the broker (kombu) and the ledger (redis-py).

``sentinel://[:password@]host:port[;sentinel://host2:port2…][/db]`` names the
sentinels, not the master: the clients ask them for the master of
``STARTPROC_SENTINEL_MASTER`` and ask again when a connection to it fails,
so a failover (a replica promoted) is followed without a restart. The
password in the URL is the master's (``requirepass``);
``STARTPROC_SENTINEL_PASSWORD`` is the sentinels' own, when they have one.
The database may be written on any of the parts (all that name one must
agree); kombu wants it on the first, so `kombu_url` writes it on every part.

Writes acknowledged by a master that dies before its replica received them
are lost (Redis replicates asynchronously). The ledger's lost-entry recovery
and the sweeper's re-drive cover that (README "Sentinel").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from worker.errors import ConfigError

SCHEME = "sentinel"
DEFAULT_PORT = 26379
# A failover takes the sentinels' down-after-milliseconds plus an election: a
# command retries for about 15 s (0.05 s doubling to 2 s) before it gives up.
FAILOVER_RETRIES = 12


def is_sentinel(url: str | None) -> bool:
    return (url or "").lower().startswith(f"{SCHEME}://")


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        """Split a ``sentinel://`` URL; `ConfigError` naming what is wrong (never the password)."""
        hosts: list[tuple[str, int]] = []
        dbs: set[int] = set()
        username = password = None
        for part in url.split(";"):
            parts = urlsplit(part.strip())
            if parts.scheme.lower() != SCHEME or not parts.hostname:
                raise ConfigError(
                    "a Sentinel URL is sentinel://host:port[;sentinel://host2:port][/db], "
                    f"not {redacted(part)!r}"
                )
            try:
                port = parts.port or DEFAULT_PORT
            except ValueError:
                raise ConfigError(f"{redacted(part)!r}: the port is not a number") from None
            hosts.append((parts.hostname, port))
            path = parts.path.strip("/")
            if path:
                if not path.isdigit():
                    raise ConfigError(f"{redacted(part)!r}: the database must be a number")
                dbs.add(int(path))
            if parts.password is not None and password is None:
                password = unquote(parts.password)
                username = unquote(parts.username) if parts.username else None
        if len(dbs) > 1:
            raise ConfigError(f"the Sentinel URL names several databases: {sorted(dbs)}")
        return cls(tuple(hosts), dbs.pop() if dbs else 0, username, password)

    def kombu_url(self) -> str:
        """The URL as kombu's sentinel transport reads it (credentials and db on every part)."""
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        return ";".join(
            f"{SCHEME}://{auth}{host}:{port}/{self.db}" for host, port in self.sentinels
        )


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def transport_options(master: str | None, sentinel_password: str | None) -> dict[str, Any]:
    """kombu's options for its sentinel transport (broker_transport_options)."""
    options: dict[str, Any] = {"master_name": require_master(master)}
    if sentinel_password:
        options["sentinel_kwargs"] = {"password": sentinel_password}
    return options


def require_master(master: str | None) -> str:
    if not master:
        raise ConfigError(
            "a sentinel:// URL needs STARTPROC_SENTINEL_MASTER: the name the sentinels "
            "monitor the master under (`sentinel monitor NAME host port quorum`)"
        )
    return master


def master_client(
    url: str,
    master: str | None,
    sentinel_password: str | None,
    *,
    connect_timeout: float = 5.0,
    socket_timeout: float = 30.0,
    retries: int = FAILOVER_RETRIES,
) -> redis.Redis:
    """A client of the current master; a failover is followed on the next connection.

    redis-py's sentinel-managed connections ask the sentinels for the master
    on every new connection and treat a demoted master's READONLY answer as
    a lost connection, so the retry lands on the new master.
    """
    parsed = SentinelURL.parse(url)
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": socket_timeout,
    }
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    sentinel = Sentinel(list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs)
    client: redis.Redis = sentinel.master_for(
        require_master(master),
        redis_class=redis.Redis,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        decode_responses=True,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
    )
    return client
