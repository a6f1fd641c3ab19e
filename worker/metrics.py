"""Prometheus metrics: one registry, the job counters, and the Redis gauges read at scrape time.

Two kinds of numbers, collected two ways:

* **events** a worker sees (a job finished, an in-call retry, an ambiguous
  outcome) are counters and a histogram, incremented where they happen
  (`worker.service`) with one call each;
* **backlogs** (dead letters, ledger entries, jobs waiting in the queue,
  results in the outbox or waiting on the results queue) are read from Redis
  *when scraped*, by
  `RedisCollector`, so they are right whichever process scrapes them (the
  intake, a worker's exporter, or both) and cost nothing between scrapes.

Served by the intake at ``GET /metrics`` and by the worker-side exporter
(`worker.exporter`, started by a ``worker_init`` hook on
``STARTPROC_METRICS_PORT`` when it is set). This module imports no Celery:
the service counts through it.

Label cardinality stays bounded: ``target`` is a configured target or
``(unknown)`` (an invalid job may name anything), ``engine`` one of five,
``status`` one of three.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis
import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from worker import keys
from worker.delivery import backlog
from worker.delivery.adaptive_rate import rate_gauge
from worker.delivery.dlq import DeadLetters
from worker.models import Result

__all__ = [
    "CONTENT_TYPE_LATEST",
    "REGISTRY",
    "RedisCollector",
    "ambiguous_outcome",
    "in_call_retry",
    "job_finished",
    "registry_for_scrape",
    "render",
]

log = structlog.get_logger("worker.metrics")

UNKNOWN = "(unknown)"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MULTIPROC_PREFIX = "startproc-metrics-"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# Below this many keys the ledger gauge is an exact SCAN; above, a sampled estimate.
EXACT_LEDGER_LIMIT = 10_000
LEDGER_SAMPLES = 256
# kombu's Redis transport keeps one list per priority step; 0 is the plain queue name.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)

REGISTRY = CollectorRegistry()
"""The job counters of this process. Scrape through `registry_for_scrape`, not directly."""

STARTS = Counter(
    "startproc_starts",
    "Jobs decided (one result each), by target, engine and result status.",
    ["target", "engine", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "startproc_start_latency_seconds",
    "Seconds from a job's enqueued_at to its result's finished_at.",
    ["target", "engine"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
RETRIES = Counter(
    "startproc_retries",
    "In-call retries of a start request after a transient error (429, 503, refused, ...).",
    ["target"],
    registry=REGISTRY,
)
AMBIGUOUS = Counter(
    "startproc_ambiguous",
    "Start requests whose outcome was ambiguous (sent, no usable answer).",
    ["target"],
    registry=REGISTRY,
)


# ---------------------------------------------------------------- events (one call each)

# The labelled children by label values, resolved once per value, not per job: `.labels()`
# converts and checks its values and takes the metric's lock every time. The labels
# are bounded (see above), so are these caches; a child is the one `.labels()` keeps.
_retries = functools.cache(RETRIES.labels)
_ambiguous = functools.cache(AMBIGUOUS.labels)


@functools.cache
def _finished(target: str, engine: str, status: str) -> tuple[Counter, Histogram]:
    """The start counter and the latency histogram of one outcome, in one lookup."""
    return STARTS.labels(target, engine, status), LATENCY.labels(target, engine)


def job_finished(result: Result, first: bool = True) -> None:
    """Count a decided job; ``first=False`` (its result was already recorded) counts nothing.

    A redelivered job reaches the service's ``_done`` again, but only the
    first recording is a new outcome; counting both would inflate rates.
    """
    if not first:
        return
    starts, latency = _finished(
        result.target if result.engine and result.target else UNKNOWN,
        result.engine or UNKNOWN,
        result.status,
    )
    starts.inc()
    if result.enqueued_at is not None:
        seconds = (result.finished_at - result.enqueued_at).total_seconds()
        latency.observe(max(seconds, 0.0))


def in_call_retry(target: str) -> None:
    """One transient error retried inside the same task run."""
    _retries(target).inc()


def ambiguous_outcome(target: str) -> None:
    """One start request whose outcome is unknown (it will be reconciled or dead-lettered)."""
    _ambiguous(target).inc()


# ---------------------------------------------------------------- gauges from Redis


def _queue_lists(name: str) -> list[str]:
    return [name, *(f"{name}{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS)]


def queue_depths(broker: redis.Redis, *queues: str) -> list[int]:
    """Messages waiting in each of ``queues`` on a Redis broker (priority lists included)."""
    pipe = broker.pipeline(transaction=False)
    for queue in queues:
        for name in _queue_lists(queue):
            pipe.llen(name)
    lengths = [int(n) for n in pipe.execute()]
    step = len(_PRIORITY_STEPS) + 1
    return [sum(lengths[i : i + step]) for i in range(0, len(lengths), step)]


def _ledger_size(client: redis.Redis) -> float:
    """Ledger entries: exact on small databases, a sampled estimate on large ones.

    An exact count is a full SCAN, which on millions of keys would make every
    scrape an O(N) walk of the server. Above `EXACT_LEDGER_LIMIT` keys the
    gauge is ``DBSIZE`` times the share of ledger keys among
    `LEDGER_SAMPLES` random keys (a few percent off, pipelined, O(1)).
    """
    prefix = f"{keys.PREFIX}:ledger:"
    total = int(client.dbsize())
    if total <= EXACT_LEDGER_LIMIT:
        return float(sum(1 for _ in client.scan_iter(match=f"{prefix}*", count=1000)))
    pipe = client.pipeline(transaction=False)
    for _ in range(LEDGER_SAMPLES):
        pipe.randomkey()
    sampled = [k for k in pipe.execute() if k is not None]
    if not sampled:
        return 0.0
    hits = sum(1 for k in sampled if _text(k).startswith(prefix))
    return round(total * hits / len(sampled))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RedisCollector(Collector):
    """Backlog gauges computed from Redis (and the broker) at each scrape.

    A Redis that is down yields ``startproc_redis_up 0`` and no backlog
    gauges, never a failed scrape: the metrics endpoint is how an operator
    finds out Redis is down. The work per scrape is bounded (`worker.delivery.backlog`).
    """

    def __init__(
        self,
        client: Callable[[], redis.Redis],
        jobs_queue: str,
        broker: Callable[[], redis.Redis | None] | None = None,
        results_queue: str = "startproc.results",
        amqp_url: str | None = None,
    ) -> None:
        self._client = client
        self._broker = broker
        self._amqp_url = amqp_url
        self.jobs_queue = jobs_queue
        self.results_queue = results_queue
        self._first_seen = backlog.FirstSeen()

    def describe(self) -> Iterable[Any]:
        """Nothing up front: the registry must not call Redis when the collector is added."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("startproc_redis_up", "1 when the ledger/results Redis answered.")
        try:
            gauges = list(self._gauges())
        except Exception as exc:  # Redis down or not configured: report it, never fail the scrape
            log.warning("metrics.redis_unavailable", error=str(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from gauges
        yield from self._queue_gauges()

    def _gauges(self) -> Iterator[GaugeMetricFamily]:
        client = self._client()
        pipe = client.pipeline(transaction=False)
        pipe.hlen(keys.DLQ)
        pipe.zcard(keys.OUTBOX)
        dlq, outbox = pipe.execute()
        yield _gauge("startproc_dlq_size", "Jobs in the dead-letter store.", dlq)
        yield _gauge("startproc_outbox_size", "Results recorded but not yet published.", outbox)
        yield _gauge(
            "startproc_ledger_size",
            f"Idempotency ledger entries (exact up to {EXACT_LEDGER_LIMIT} keys, then sampled).",
            _ledger_size(client),
        )
        yield rate_gauge(client)
        yield from backlog.registry_gauges(client, DeadLetters(client))

    def _queue_gauges(self) -> Iterator[GaugeMetricFamily]:
        """Depth (both brokers) and oldest age (Redis) of the jobs queue, depth of the results
        queue (Redis); a broker that does not answer leaves them out, logged, and the other
        gauges stand."""
        try:
            broker = self._broker() if self._broker else None
            yield from backlog.queue_gauges(
                self.jobs_queue,
                _queue_lists(self.jobs_queue),
                self._first_seen,
                broker,
                self._amqp_url,
            )
            if broker is not None:
                [results] = queue_depths(broker, self.results_queue)
                yield _gauge(
                    "startproc_results_queue_depth",
                    "Results nobody has consumed yet on the results queue (Redis broker only); "
                    "it has no cap and no TTL, so a queue nobody reads fills Redis.",
                    results,
                    ["queue"],
                    [self.results_queue],
                )
        except Exception as exc:
            log.warning("metrics.broker_unavailable", error=str(exc))


def _gauge(
    name: str,
    doc: str,
    value: float,
    labels: list[str] | None = None,
    values: list[str] | None = None,
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels or [])
    family.add_metric(values or [], float(value))
    return family


def broker_redis_url(broker_url: str | None) -> str | None:
    """The broker's URL when it is a Redis one (queue depth is read with LLEN)."""
    if broker_url and broker_url.startswith(("redis://", "rediss://", "unix://", "sentinel://")):
        return broker_url
    return None


def broker_amqp_url(broker_url: str | None) -> str | None:
    """The broker's URL when it is RabbitMQ (queue depth by a passive declare)."""
    if broker_url and broker_url.startswith(("amqp://", "amqps://", "pyamqp://")):
        return broker_url
    return None


def redis_collector_from_settings() -> RedisCollector:
    """A collector wired to the configured Redis and broker, lazily."""
    from worker.broker.connections import shared_redis
    from worker.config import settings

    cfg = settings()
    broker = broker_redis_url(cfg.broker_url)
    return RedisCollector(
        lambda: shared_redis(cfg.require_redis()),
        cfg.jobs_queue,
        (lambda: shared_redis(broker)) if broker else None,
        cfg.results_queue,
        amqp_url=broker_amqp_url(cfg.broker_url),
    )


# ---------------------------------------------------------------- serving


def registry_for_scrape(extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """What a scrape sees: this process's counters (or every process's) plus ``extra``.

    In multiprocess mode the live counters are in the files of
    ``PROMETHEUS_MULTIPROC_DIR``; the in-process `REGISTRY` would show only
    one process, so it is replaced by a ``MultiProcessCollector``.
    """
    registry = CollectorRegistry(auto_describe=False)
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        # prometheus-client's multiprocess module has no annotations.
        collector: Any = MultiProcessCollector
        collector(registry, path=path)
    else:
        registry.register(_Forward(REGISTRY))
    for collector in extra:
        registry.register(collector)
    return registry


class _Forward(Collector):
    """Exposes another registry's metrics, so `REGISTRY` can be part of a scrape registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        return self.source.collect()


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
