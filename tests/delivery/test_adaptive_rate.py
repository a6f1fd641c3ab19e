"""The adaptive shared rate (AIMD) in real Redis, on explicit clocks, and its gauge.

Times are passed to the script (``now_ms``), so every number here is exact;
in production the script reads Redis' own clock.
"""

from __future__ import annotations

import pytest
import redis
from kombu import Connection
from prometheus_client import CollectorRegistry, generate_latest

from tests.conftest import make_settings, sandbox_targets
from tests.support.service import run
from worker.delivery.adaptive_rate import SharedRate, rate_gauge
from worker.delivery.ratelimit import per_millisecond
from worker.keys import rate_key
from worker.local.sandbox import SandboxServer
from worker.metrics import RedisCollector
from worker.runtime import build_runtime
from worker.service import RetryLater

CEILING = per_millisecond("100/s")
T0 = 1_000_000


@pytest.fixture
def shared(redis_client: redis.Redis) -> SharedRate:
    return SharedRate(redis_client)


def test_a_full_bucket_holds_a_tenth_of_a_second_at_the_ceiling(shared: SharedRate) -> None:
    grants = [shared.take("t", CEILING, True, T0) for _ in range(11)]
    assert [g.wait for g in grants[:10]] == [0.0] * 10
    assert grants[10].wait == 0.01  # one token at 100/s
    assert {g.rate for g in grants} == {100.0} and {g.epoch for g in grants} == {0}


def test_backpressure_halves_the_rate_once_per_epoch(shared: SharedRate) -> None:
    epoch = shared.take("t", CEILING, True, T0).epoch
    first = shared.slow_down("t", CEILING, epoch, T0)
    again = shared.slow_down("t", CEILING, epoch, T0)  # sent before the decrease: ignored
    assert (first.rate, first.epoch) == (50.0, 1)
    assert (again.rate, again.epoch) == (50.0, 1)
    newer = shared.take("t", CEILING, True, T0).epoch
    assert shared.slow_down("t", CEILING, newer, T0).rate == 25.0


def test_the_rate_climbs_back_by_the_ceiling_a_minute(shared: SharedRate) -> None:
    shared.slow_down("t", CEILING, shared.take("t", CEILING, True, T0).epoch, T0)
    assert shared.take("t", CEILING, True, T0 + 15_000).rate == pytest.approx(75.0)
    assert shared.take("t", CEILING, True, T0 + 30_000).rate == pytest.approx(100.0)
    assert shared.take("t", CEILING, True, T0 + 90_000).rate == 100.0  # never above


def test_the_rate_never_falls_below_a_hundredth_of_the_ceiling(shared: SharedRate) -> None:
    for _ in range(20):
        grant = shared.take("t", CEILING, True, T0)
        shared.slow_down("t", CEILING, grant.epoch, T0)
    grant = shared.take("t", CEILING, True, T0)
    assert grant.rate == pytest.approx(1.0) and grant.epoch == 20


def test_a_slower_rate_spaces_the_tokens(shared: SharedRate) -> None:
    for _ in range(3):
        shared.slow_down("t", CEILING, shared.take("t", CEILING, True, T0).epoch, T0)
    waits = [shared.take("t", CEILING, True, T0).wait for _ in range(3)]  # 12.5/s
    assert waits[-1] == 0.08


def test_a_fixed_rate_ignores_backpressure_and_follows_its_ceiling(shared: SharedRate) -> None:
    epoch = shared.take("t", CEILING, False, T0).epoch
    assert shared.slow_down("t", CEILING, epoch, T0).rate == 50.0  # only if asked to adapt
    assert shared.take("t", CEILING, False, T0).rate == 100.0
    lowered = per_millisecond("10/s")  # the targets file now says less
    assert shared.take("t", lowered, True, T0).rate == 10.0


def test_the_gauge_shows_each_targets_current_rate(
    shared: SharedRate, redis_client: redis.Redis
) -> None:
    shared.take("orders", CEILING, True, T0)
    shared.slow_down("orders", CEILING, 0, T0)
    shared.take("invoices", per_millisecond("20/m"), True, T0)
    family = rate_gauge(redis_client)
    rates = {sample.labels["target"]: sample.value for sample in family.samples}
    assert rates == {"orders": 50.0, "invoices": pytest.approx(20 / 60)}
    registry = CollectorRegistry()
    registry.register(RedisCollector(lambda: redis_client, "startproc.jobs"))
    text = generate_latest(registry).decode()
    assert 'startproc_target_rate_per_second{target="orders"} 50.0' in text
    redis_client.delete(rate_key("orders"))  # expired after a long idle: not shown
    assert [s.labels["target"] for s in rate_gauge(redis_client).samples] == ["invoices"]


# ---------------------------------------------------------------- through the service


def test_a_429_from_the_engine_lowers_the_targets_shared_rate(
    redis_url: str, redis_client: redis.Redis, sandbox: SandboxServer
) -> None:
    targets = sandbox_targets(sandbox, camunda8={"rate_limit": "100/s"},
                              camunda7={"rate_limit": "100/s", "adaptive_rate": False})
    rt = build_runtime(make_settings(redis_url, http_attempts=1), targets, Connection(redis_url))
    rt.service.sleep = lambda _s: None
    for engine, expected in (("camunda8", 50.0), ("camunda7", 100.0)):
        sandbox.app(engine).faults.script([{"status": 429}])
        outcome = run(rt, {"target": engine, "process": "order-process" if engine ==
                           "camunda8" else "invoice"}, f"bp-{engine}")
        assert isinstance(outcome, RetryLater)  # retried later, not failed
        per_ms = redis_client.hget(rate_key(engine), "rate")
        assert per_ms is not None and float(per_ms) * 1000 == expected
