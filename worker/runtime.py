"""Wiring: settings and targets -> ledger, results, engines -> the start service.

Built once per process (``runtime()``), so no job re-reads config or
re-opens connections.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import structlog
from kombu.connection import Connection

from worker.broker.connections import broker_connection, shared_redis
from worker.config import Settings, settings
from worker.delivery.dlq import DeadLetters
from worker.delivery.inflight import InFlight
from worker.delivery.ledger import Ledger
from worker.delivery.liveness import Liveness
from worker.delivery.ratelimit import RateLimiter
from worker.delivery.results import KombuPublisher, ResultStore
from worker.engines import EngineCache
from worker.errors import ConfigError
from worker.retry import RetryPolicy
from worker.service import StartService
from worker.targets import Targets, load_targets

log = structlog.get_logger("worker.runtime")


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    targets: Targets
    service: StartService
    results: ResultStore
    dead_letters: DeadLetters


def policy_from(cfg: Settings) -> RetryPolicy:
    return RetryPolicy(
        attempts=cfg.http_attempts,
        initial=cfg.http_backoff_initial,
        cap=cfg.http_backoff_max,
        task_max_retries=cfg.task_max_retries,
        task_backoff_max=cfg.task_retry_backoff_max,
    )


def result_store(cfg: Settings, connection: Connection | None = None) -> ResultStore:
    redis_url = cfg.require_redis()
    client = shared_redis(redis_url)
    conn = connection or broker_connection(cfg.require_broker())
    same_redis = cfg.broker_url == redis_url and redis_url.startswith(
        ("redis://", "rediss://", "sentinel://")
    )
    return ResultStore(
        client,
        KombuPublisher(conn, cfg.results_queue),
        cfg.retention_days,
        atomic_queue=cfg.results_queue if same_redis else None,
    )


LEASE_MARGIN_SECONDS = 1.0


def check_lease(cfg: Settings, targets: Targets) -> None:
    """The ledger lease must outlast one whole HTTP attempt to the slowest target.

    A lease that expires while its holder is still waiting for the engine lets
    a second job with the same key take over, find nothing yet, and start the
    instance a second time.
    """
    for target in targets.values():
        attempt = target.connect_timeout + target.timeout + LEASE_MARGIN_SECONDS
        if cfg.lease_seconds <= attempt:
            raise ConfigError(
                f"STARTPROC_LEASE_SECONDS ({cfg.lease_seconds}) must be longer than "
                f"connect_timeout + timeout + {LEASE_MARGIN_SECONDS:g}s of target "
                f"{target.name!r} ({attempt:g}s)"
            )


def warn_unverified(targets: Targets) -> None:
    """``verify_tls = false`` stays possible (a test engine), but never silently."""
    for target in targets.values():
        if not target.verify_tls:
            log.warning(
                "target.tls_unverified",
                target=target.name,
                reason="verify_tls = false: the engine's certificate is not checked, so "
                "anyone between the worker and the engine can read and change its calls; "
                "use tls.ca_file for a private CA instead",
            )


def build_runtime(cfg: Settings, targets: Targets, connection: Connection | None = None) -> Runtime:
    check_lease(cfg, targets)
    warn_unverified(targets)
    client = shared_redis(cfg.require_redis())
    results = result_store(cfg, connection)
    dead_letters = DeadLetters(client)
    service = StartService(
        targets=targets,
        engines=EngineCache(targets, client),
        ledger=Ledger(client, cfg.lease_seconds, cfg.retention_days),
        results=results,
        dead_letters=dead_letters,
        policy=policy_from(cfg),
        inflight=InFlight(client),
        rate_limiter=RateLimiter(client),
        max_deliveries=cfg.max_deliveries,
        reconcile_window=cfg.reconcile_window,
        decide_within=float(cfg.task_time_limit + cfg.lease_seconds + 60),
        liveness=Liveness(client, cfg.liveness_ttl),
    )
    return Runtime(cfg, targets, service, results, dead_letters)


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    """The process-wide runtime, from the environment."""
    cfg = settings()
    return build_runtime(cfg, load_targets(cfg.targets))
