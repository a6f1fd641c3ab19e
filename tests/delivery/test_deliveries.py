"""Arrival: every delivery counted and registered, with the first claim in the same script.

The job is read and its claim built before arrival (no Redis), so a start
costs two round trips (arrival with the claim, then the outcome); whatever
fails before arrival is decided, or raised, only after the delivery counts.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.support.service import C8_JOB, run
from worker.delivery import redis_batch
from worker.errors import PermanentError
from worker.keys import deliveries_key, ledger_key
from worker.local.sandbox import SandboxServer
from worker.runtime import Runtime

KEY = "camunda8:order-process:{}"


def count_round_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every exchange with Redis from here on: our batches and redis-py's own commands."""
    seen: list[str] = []
    batch_round_trip = redis_batch.round_trip
    command = redis.Redis.execute_command
    pipeline = redis.client.Pipeline.execute

    def counted_batch(client: Any, commands: Any) -> Any:
        seen.append("batch")
        return batch_round_trip(client, commands)

    def counted_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(args[0]))
        return command(self, *args, **kwargs)

    def counted_pipeline(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append("pipeline")
        return pipeline(self, *args, **kwargs)

    monkeypatch.setattr(redis_batch, "round_trip", counted_batch)
    monkeypatch.setattr(redis.Redis, "execute_command", counted_command)
    monkeypatch.setattr(redis.client.Pipeline, "execute", counted_pipeline)
    return seen


def test_a_start_is_two_round_trips_arrival_with_the_claim_then_the_outcome(
    rt: Runtime, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(rt, {**C8_JOB, "business_key": "warm"}, job_id="warm")  # scripts loaded, token cached
    seen = count_round_trips(monkeypatch)
    result = run(rt, {**C8_JOB, "business_key": "two"}, job_id="two")
    assert result.status == "created"
    assert seen == ["batch", "batch"]
    assert sandbox.app("camunda8").count() == 2


def test_a_poison_job_is_given_up_without_claiming_its_key(rt: Runtime) -> None:
    rt.service.max_deliveries = 2
    rt.service.ledger.client.set(deliveries_key("p-1"), 2)  # two earlier deliveries died
    result = run(rt, {**C8_JOB, "business_key": "poison"}, job_id="p-1")
    assert result.error is not None and result.error.kind == "exhausted"
    assert not rt.service.ledger.client.exists(ledger_key("camunda8", KEY.format("poison")))


def test_a_redelivery_of_a_decided_job_takes_no_lease(rt: Runtime) -> None:
    first = run(rt, {**C8_JOB, "business_key": "once"}, job_id="once")
    client = rt.service.ledger.client
    entry = client.hgetall(ledger_key("camunda8", KEY.format("once")))
    again = run(rt, {**C8_JOB, "business_key": "once"}, job_id="once")
    assert again == first
    assert client.hgetall(ledger_key("camunda8", KEY.format("once"))) == entry
    assert int(client.get(deliveries_key("once"))) == 2


def test_a_job_error_before_arrival_is_decided_after_the_delivery_counts(
    rt: Runtime, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = rt.service.engines.get("camunda8")

    def refuse(*_args: Any) -> Any:
        raise PermanentError("variables: refused by the adapter")

    monkeypatch.setattr(engine, "start_request", refuse)
    result = run(rt, {**C8_JOB, "business_key": "refused"}, job_id="refused")
    assert result.error is not None and result.error.kind == "permanent"
    assert int(rt.service.ledger.client.get(deliveries_key("refused"))) == 1
    assert rt.service.inflight.size() == 0  # decided, so forgotten
    assert sandbox.app("camunda8").count() == 0


def test_a_bug_before_arrival_is_raised_after_the_job_is_counted_and_registered(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = rt.service.engines.get("camunda8")

    def crash(*_args: Any) -> Any:
        raise RuntimeError("a bug in an adapter")

    monkeypatch.setattr(engine, "start_request", crash)
    with pytest.raises(RuntimeError, match="a bug in an adapter"):
        run(rt, {**C8_JOB, "business_key": "bug"}, job_id="bug")
    assert int(rt.service.ledger.client.get(deliveries_key("bug"))) == 1
    assert rt.service.inflight.size() == 1  # the sweeper still sees it
    assert not rt.service.ledger.client.exists(ledger_key("camunda8", KEY.format("bug")))
