"""What the routes share: settings, the publisher, the results store, health probes, metrics.

One `Intake` per app (on ``app.state.intake``), built without touching the
network: connections open on first use, so ``startproc serve`` starts (and
``/healthz`` can report the outage) while Redis or the broker is still down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import redis
from fastapi import Request
from kombu.connection import Connection
from prometheus_client import CollectorRegistry

from worker.broker.connections import redis_client
from worker.config import Settings
from worker.delivery.results import ResultStore
from worker.metrics import (
    RedisCollector,
    broker_amqp_url,
    broker_redis_url,
    registry_for_scrape,
)
from worker.targets import Targets, load_targets

Publisher = Callable[[list[dict[str, Any]]], list[str]]
PROBE_TIMEOUT = 2.0


def probe_client(url: str) -> redis.Redis:
    """A Redis client that fails fast: health checks and scrapes must not hang on an outage."""
    return redis_client(url, probe=True)


@dataclass
class Intake:
    settings: Settings
    publisher: Publisher | None = None
    targets_file: Targets | None = None
    _probes: dict[str, redis.Redis] = field(default_factory=dict)

    def targets(self) -> Targets:
        """The targets file (names and shapes; no secret needed), read once; `ConfigError`."""
        if self.targets_file is None:
            self.targets_file = load_targets(self.settings.targets, frozenset())
        return self.targets_file

    def publish(self, prepared: list[dict[str, Any]]) -> list[str]:
        """Send validated jobs to the jobs queue, by task name, on one connection."""
        if self.publisher is not None:
            return self.publisher(prepared)
        from worker.producer import publish

        return publish(prepared, self.settings.require_broker())

    @cached_property
    def store(self) -> ResultStore:
        from worker.runtime import result_store

        return result_store(self.settings)

    def probe(self, url: str) -> redis.Redis:
        if url not in self._probes:
            self._probes[url] = probe_client(url)
        return self._probes[url]

    def health(self) -> dict[str, dict[str, Any]]:
        """``{"redis": {"ok": …}, "broker": {"ok": …}}``; each check's error is a short reason."""
        return {"redis": self._check_redis(), "broker": self._check_broker()}

    def _check_redis(self) -> dict[str, Any]:
        url = self.settings.effective_redis_url()
        if not url:
            return {"ok": False, "error": "STARTPROC_REDIS_URL is not set"}
        return _run(lambda: self.probe(url).ping())

    def _check_broker(self) -> dict[str, Any]:
        url = self.settings.broker_url
        if not url:
            return {"ok": False, "error": "STARTPROC_BROKER_URL is not set"}
        if broker_redis_url(url):
            return _run(lambda: self.probe(url).ping())

        def connect() -> None:
            kombu_connection: Any = Connection  # kombu has no annotations
            with kombu_connection(url, connect_timeout=PROBE_TIMEOUT) as conn:
                conn.ensure_connection(max_retries=1)

        return _run(connect)

    @cached_property
    def metrics_registry(self) -> CollectorRegistry:
        """Counters (this process's, or all of them in multiprocess mode) plus Redis gauges."""
        cfg = self.settings
        broker = broker_redis_url(cfg.broker_url)
        collector = RedisCollector(
            lambda: self.probe(cfg.require_redis()),
            cfg.jobs_queue,
            (lambda: self.probe(broker)) if broker else None,
            cfg.results_queue,
            amqp_url=broker_amqp_url(cfg.broker_url),
        )
        return registry_for_scrape([collector])


def _run(check: Callable[[], object]) -> dict[str, Any]:
    try:
        check()
    except Exception as exc:  # any failure means "not reachable"; the reason is reported
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return {"ok": True}


def intake_of(request: Request) -> Intake:
    return intake_of_app(request.app)


def intake_of_app(app: Any) -> Intake:
    intake: Intake = app.state.intake
    return intake
