"""Is a Redis safe to keep the ledger in? Asked once per process and URL, at start.

Every ledger entry, result and delivery counter has a TTL, so a Redis whose
``maxmemory-policy`` is ``volatile-*`` evicts them when it is full, and an
``allkeys-*`` one evicts anything, queues included. An evicted ledger entry is
forgotten silently: the next copy of its job is a fresh claim and a blind
resend. Only ``noeviction`` makes a full Redis refuse writes, which a job
survives (it retries). So workers, beat and every producer refuse any other
policy, naming the setting.

Persistence off is allowed but warned about (a restart loses the queue, the
ledger and the results), except for the embedded development Redis of
``startproc up``, the demo and the tests, which is throw-away by design.
A Redis that does not let us read its configuration (managed services
rename or forbid ``CONFIG``) cannot be checked: a warning says so, and it is
used. An unreachable Redis is not judged (and asked again next time): the
components wait for it as before.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import redis
import structlog

from worker.config import Settings
from worker.errors import ConfigError

log = structlog.get_logger("worker.broker.redis_policy")

SAFE_POLICY = "noeviction"
_PARAMETERS = ("maxmemory-policy", "appendonly", "save", "dir")
_checked: set[str] = set()
_lock = threading.Lock()

EMBEDDED_DIR_PREFIX = "startproc-redis-"
"""How an embedded development server's data directory starts (`worker.local.embedded`)."""


@dataclass(frozen=True)
class RedisConfig:
    """What a Redis says about eviction and persistence (None: it would not say)."""

    policy: str | None
    appendonly: bool = False
    snapshots: bool = False
    embedded: bool = False
    refusal: str = ""

    @property
    def persistent(self) -> bool:
        return self.appendonly or self.snapshots


def where(url: str) -> str:
    """The Redis of ``url`` as host:port/db, never its password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    db = parts.path.lstrip("/") or "0"
    return f"{parts.hostname}:{parts.port or 6379}/{db}"


def read_config(client: redis.Redis) -> RedisConfig:
    """One round trip of ``CONFIG GET``s; a refusal is reported, not raised.

    Connection errors are raised: an unreachable Redis says nothing yet.
    """
    pipe = client.pipeline(transaction=False)
    for name in _PARAMETERS:
        pipe.config_get(name)
    answers = pipe.execute(raise_on_error=False)
    refused = [a for a in answers if isinstance(a, Exception)]
    for answer in refused:
        if isinstance(answer, redis.ConnectionError | redis.TimeoutError):
            raise answer
    if refused:
        return RedisConfig(policy=None, refusal=type(refused[0]).__name__)
    pairs = zip(_PARAMETERS, answers, strict=True)
    values = {name: str(_value(answer, name)) for name, answer in pairs}
    return RedisConfig(
        policy=values["maxmemory-policy"],
        appendonly=values["appendonly"] == "yes",
        snapshots=bool(values["save"].strip()),
        embedded=PurePosixPath(values["dir"]).name.startswith(EMBEDDED_DIR_PREFIX),
    )


def _value(answer: object, name: str) -> object:
    """``CONFIG GET`` answers a dict (redis-py 4+); a missing key reads as empty."""
    return answer.get(name, "") if isinstance(answer, dict) else ""


def judge(config: RedisConfig, url: str) -> None:
    """Raise `ConfigError` for an evicting Redis; warn about what cannot be promised."""
    place = where(url)
    if config.policy is None:
        log.warning(
            "redis.policy_unchecked",
            redis=place,
            refused=config.refusal,
            message="this Redis does not let us read maxmemory-policy (CONFIG GET refused); "
            "make sure it is noeviction, or evicted ledger entries can double-start jobs",
        )
        return
    if config.policy != SAFE_POLICY:
        raise ConfigError(
            f"Redis {place} has maxmemory-policy {config.policy!r}: when it is full it evicts "
            "keys, and an evicted ledger entry lets a job start a second instance. Set "
            f"maxmemory-policy {SAFE_POLICY} (redis.conf, `CONFIG SET maxmemory-policy "
            f"{SAFE_POLICY}`, or the managed service's parameter group)."
        )
    if not config.persistent and not config.embedded:
        log.warning(
            "redis.persistence_off",
            redis=place,
            message="neither AOF (appendonly) nor RDB snapshots (save) are on: a restart "
            "loses queued jobs, the ledger and the results; set appendonly yes",
        )


def check_redis(url: str, client: redis.Redis | None = None) -> None:
    """Judge the Redis at ``url`` once per process; later calls cost a set lookup.

    Raises `ConfigError` when it may evict keys. An unreachable Redis is
    logged and left unjudged, so the next call asks again.
    """
    if url in _checked:
        return
    with _lock:
        if url in _checked:
            return
        if client is None:
            from worker.broker.connections import shared_redis

            client = shared_redis(url)
        try:
            config = read_config(client)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("redis.unreachable_at_check", redis=where(url), error=type(exc).__name__)
            return
        judge(config, url)
        _checked.add(url)


def check_settings(cfg: Settings, broker_url: str | None = None) -> None:
    """Check the ledger Redis and, when it is a Redis, the broker (raises `ConfigError`)."""
    urls = [cfg.effective_redis_url(), broker_url or cfg.broker_url]
    for url in dict.fromkeys(u for u in urls if u and u.startswith(REDIS_SCHEMES)):
        check_redis(url)


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def forget() -> None:
    """Judge every Redis again on next use (tests, and a process that changed its Redis)."""
    with _lock:
        _checked.clear()
