"""Camunda 8.9 business id uniqueness through the service: real Redis, the C8 sandbox.

Every 8.9 start carries a business id; with the cluster's uniqueness control
on, the engine refuses a second active instance with it (409), and the
worker finds out whose instance holds it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
from kombu import Connection

from tests.conftest import make_settings, sandbox_targets
from tests.support.failover import default_camunda8, enforce_business_ids, lose_recent_writes
from tests.support.service import run
from worker.local.sandbox import SandboxServer
from worker.local.sandbox.camunda8 import Camunda8App
from worker.runtime import Runtime, build_runtime
from worker.service import RetryLater


@pytest.fixture
def c8(sandbox: SandboxServer) -> Iterator[Camunda8App]:
    app = sandbox.app("camunda8")
    assert isinstance(app, Camunda8App)
    enforce_business_ids(app)
    yield app
    default_camunda8(app)


@pytest.fixture
def rt(redis_url: str, sandbox: SandboxServer, c8: Camunda8App) -> Runtime:
    targets = sandbox_targets(sandbox, camunda8={"api_version": "8.9"})
    runtime = build_runtime(make_settings(redis_url), targets, Connection(redis_url))
    runtime.service.sleep = lambda _s: None
    return runtime


@pytest.mark.parametrize(
    ("job", "key"),
    [
        ({"business_key": "B-1"}, "camunda8:order-process:B-1"),
        ({"idempotency_key": "no-business-key"}, "no-business-key"),
    ],
    ids=["business key", "only an idempotency key"],
)
def test_a_start_whose_ledger_entry_was_lost_is_found_through_the_engine_not_doubled(
    rt: Runtime, c8: Camunda8App, redis_client: redis.Redis, job: dict[str, Any], key: str
) -> None:
    job = {"target": "camunda8", "process": "order-process", **job}
    first = run(rt, job, "j-1")
    assert first.status == "created"
    lose_recent_writes(redis_client, "camunda8", key, "j-1")
    again = run(rt, job, "j-1")  # redelivered: the ledger knows nothing, so it sends
    assert c8.stats()["start_requests"] == 2
    assert again.status == "created", again.error
    assert again.instance_id == first.instance_id
    assert c8.count() == 1


def test_a_business_id_held_by_another_instance_is_a_conflict_naming_it(
    rt: Runtime, c8: Camunda8App, sandbox: SandboxServer, redis_client: redis.Redis
) -> None:
    other = requests.post(
        sandbox.base_url("camunda8") + "/v2/process-instances",
        json={"processDefinitionId": "order-process", "businessId": "B-2"},
        timeout=5,
    ).json()["processInstanceKey"]
    job = {"target": "camunda8", "process": "order-process", "business_key": "B-2"}
    result = run(rt, job, "j-2")
    assert result.status == "failed" and result.error is not None
    assert result.error.kind == "conflict" and result.error.http_status == 409
    assert result.error.existing_instance_id == other
    assert json.loads(redis_client.get("startproc:result:j-2"))["error"][
        "existing_instance_id"
    ] == other
    assert c8.count() == 1
    assert rt.dead_letters.get("j-2") is None  # decided: nothing for a person to check


def test_return_existing_makes_another_apps_holder_the_jobs_duplicate(
    rt: Runtime, c8: Camunda8App, sandbox: SandboxServer
) -> None:
    other = requests.post(
        sandbox.base_url("camunda8") + "/v2/process-instances",
        json={"processDefinitionId": "order-process", "businessId": "B-3"},
        timeout=5,
    ).json()["processInstanceKey"]
    job = {"target": "camunda8", "process": "order-process", "business_key": "B-3",
           "options": {"on_duplicate": "return_existing"}}
    result = run(rt, job, "j-3")
    assert (result.status, result.instance_id, result.error) == ("duplicate", other, None)
    assert c8.count() == 1
    assert rt.dead_letters.get("j-3") is None
    later = run(rt, job, "j-4")  # the ledger remembers it: no second call
    assert (later.status, later.instance_id) == ("duplicate", other)
    assert c8.stats()["start_requests"] == 2  # the other app's and ours, refused


def lagging_runtime(redis_url: str, sandbox: SandboxServer) -> Runtime:
    """Reconcile window 0.3 s: the search below lags an hour, far beyond it."""
    targets = sandbox_targets(sandbox, camunda8={"api_version": "8.9"})
    runtime = build_runtime(make_settings(redis_url, reconcile_window=0.3), targets,
                            Connection(redis_url))
    runtime.service.sleep = lambda _s: None
    runtime.service.policy.__dict__["sleep"] = lambda _s: None  # frozen dataclass: tests only
    return runtime


JOB_B5 = {"target": "camunda8", "process": "order-process", "business_key": "B-5"}


def test_a_lost_answer_and_a_search_lagging_far_beyond_the_window_still_give_one_instance(
    redis_url: str, sandbox: SandboxServer, c8: Camunda8App
) -> None:
    """The lookups find nothing, so the worker sends again: the engine refuses (the id
    is held), the holder cannot be searched yet either, so the job stays ambiguous,
    never doubled, until the search catches up."""
    rt = lagging_runtime(redis_url, sandbox)
    c8.faults.script([{"drop": "after_commit"}])
    c8.faults.configure(search_lag_ms=3_600_000)
    assert isinstance(run(rt, JOB_B5, "j-5"), RetryLater)  # the answer was lost
    for retry in (1, 2):
        later = run(rt, JOB_B5, "j-5", retries=retry)
        assert isinstance(later, RetryLater), later  # resent, refused, holder not found
        assert "business id 'B-5'" in later.reason and "it may be ours" in later.reason
    assert c8.stats()["start_requests"] == 3 and c8.count() == 1
    c8.faults.configure(search_lag_ms=0)  # the search catches up
    result = run(rt, JOB_B5, "j-5", retries=3)
    assert result.status == "created", result.error
    assert result.instance_id == c8.instances[0]["id"]
    assert c8.count() == 1


def test_without_the_uniqueness_control_the_same_lag_would_double_the_instance(
    redis_url: str, sandbox: SandboxServer, c8: Camunda8App
) -> None:
    """What the engine-side control buys: the same run with it off starts two."""
    c8.configure(business_id_unique=False)
    rt = lagging_runtime(redis_url, sandbox)
    c8.faults.script([{"drop": "after_commit"}])
    c8.faults.configure(search_lag_ms=3_600_000)
    assert isinstance(run(rt, JOB_B5, "j-6"), RetryLater)
    assert run(rt, JOB_B5, "j-6", retries=1).status == "created"
    assert c8.count() == 2
