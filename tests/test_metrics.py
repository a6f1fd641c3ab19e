"""worker.metrics: the job counters, the Redis gauges, multiprocess mode and the exporter.

Counters are process-wide, so every assertion is on a difference (before ->
after), never on an absolute value another test could have moved.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from tests.support.prometheus import scrape, value
from worker import keys, metrics
from worker.delivery.dlq import DeadLetters
from worker.models import ErrorInfo, Result, utcnow

REPO = Path(__file__).resolve().parents[1]


def result(**fields: object) -> Result:
    now = utcnow()
    base: dict[str, object] = {
        "job_id": "j-1",
        "target": "orders",
        "engine": "camunda8",
        "status": "created",
        "enqueued_at": now - timedelta(seconds=1.5),
        "finished_at": now,
    }
    base.update(fields)
    return Result.model_validate(base)


# ---------------------------------------------------------------- counters


def test_a_finished_job_counts_once_with_its_latency() -> None:
    labels = {"target": "orders", "engine": "camunda8"}
    before = scrape()
    metrics.job_finished(result())
    metrics.job_finished(result(), first=False)  # a redelivery: not a new outcome
    after = scrape()

    def delta(name: str, **extra: str) -> float:
        return value(after, name, **labels, **extra) - value(before, name, **labels, **extra)

    assert delta("startproc_starts_total", status="created") == 1
    assert delta("startproc_start_latency_seconds_count") == 1
    assert delta("startproc_start_latency_seconds_sum") == pytest.approx(1.5, abs=0.01)
    assert delta("startproc_start_latency_seconds_bucket", le="1.0") == 0
    assert delta("startproc_start_latency_seconds_bucket", le="2.5") == 1


def test_an_invalid_job_is_labelled_unknown_not_by_what_it_claims() -> None:
    """An invalid job may name any target: labels must not grow with what producers send."""
    before = scrape()
    bad = result(
        target="no-such-target-" + "x" * 100,
        engine=None,
        status="failed",
        enqueued_at=None,
        error=ErrorInfo(kind="invalid", message="bad"),
    )
    metrics.job_finished(bad)
    after = scrape()
    labels = {"target": "(unknown)", "engine": "(unknown)", "status": "failed"}
    assert value(after, "startproc_starts_total", **labels) == (
        value(before, "startproc_starts_total", **labels) + 1
    )
    assert "no-such-target" not in after


def test_retries_and_ambiguous_outcomes_count_by_target() -> None:
    before = scrape()
    metrics.in_call_retry("billing")
    metrics.in_call_retry("billing")
    metrics.ambiguous_outcome("billing")
    after = scrape()
    for name, expected in (("startproc_retries_total", 2), ("startproc_ambiguous_total", 1)):
        gained = value(after, name, target="billing") - value(before, name, target="billing")
        assert gained == expected


# ---------------------------------------------------------------- Redis gauges


@pytest.fixture
def collector(redis_url: str) -> Iterator[metrics.RedisCollector]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield metrics.RedisCollector(lambda: client, "startproc.jobs", lambda: client)
    client.close()


def gauges(collector: metrics.RedisCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return metrics.render(registry).decode()


def test_backlog_gauges_read_redis_at_scrape_time(
    collector: metrics.RedisCollector, redis_client: redis.Redis
) -> None:
    empty = gauges(collector)
    assert value(empty, "startproc_redis_up") == 1
    for name in ("startproc_dlq_size", "startproc_outbox_size", "startproc_ledger_size"):
        assert value(empty, name) == 0
    assert value(empty, "startproc_jobs_queue_depth", queue="startproc.jobs") == 0

    DeadLetters(redis_client).add("j-1", {"target": "orders"}, "exhausted", None)
    redis_client.zadd(keys.OUTBOX, {"j-2": 1.0, "j-3": 2.0})
    for n in range(3):
        redis_client.hset(keys.ledger_key("orders", f"k-{n}"), "state", "SUCCEEDED")
    redis_client.lpush("startproc.jobs", "a", "b")
    redis_client.lpush("startproc.jobs\x06\x163", "c")  # kombu's list for priority 3

    full = gauges(collector)
    assert value(full, "startproc_dlq_size") == 1
    assert value(full, "startproc_outbox_size") == 2
    assert value(full, "startproc_ledger_size") == 3
    assert value(full, "startproc_jobs_queue_depth", queue="startproc.jobs") == 3


def test_ledger_size_is_sampled_on_large_databases(
    collector: metrics.RedisCollector, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "EXACT_LEDGER_LIMIT", 100)
    pipe = redis_client.pipeline(transaction=False)
    for n in range(1500):
        pipe.set(keys.ledger_key("orders", f"k-{n}"), 1)
    for n in range(500):
        pipe.set(f"other:{n}", 1)
    pipe.execute()
    estimate = value(gauges(collector), "startproc_ledger_size")
    # 256 samples of a 75 % share: +-20 % is about seven standard deviations.
    assert 1500 * 0.8 <= estimate <= 1500 * 1.2


def test_a_redis_outage_is_a_gauge_not_a_failed_scrape() -> None:
    def down() -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)

    text = gauges(metrics.RedisCollector(down, "startproc.jobs"))
    assert value(text, "startproc_redis_up") == 0
    assert "startproc_dlq_size" not in text


def test_queue_depth_needs_a_redis_broker() -> None:
    assert metrics.broker_redis_url("amqp://guest@localhost//") is None
    assert metrics.broker_redis_url("redis://localhost:6379/0") == "redis://localhost:6379/0"


def test_the_results_queue_depth_is_a_gauge(
    collector: metrics.RedisCollector, redis_client: redis.Redis
) -> None:
    """The results list has no cap and no TTL: its depth is how an operator sees it grow."""
    assert value(gauges(collector), "startproc_results_queue_depth", queue="startproc.results") == 0
    redis_client.lpush("startproc.results", "a", "b")
    redis_client.lpush("startproc.results\x06\x166", "c")  # kombu's list for priority 6
    full = gauges(collector)
    assert value(full, "startproc_results_queue_depth", queue="startproc.results") == 3
    assert value(full, "startproc_jobs_queue_depth", queue="startproc.jobs") == 0
