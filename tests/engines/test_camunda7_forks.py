"""``engine = "camunda7"`` against Operaton and CIB seven, the Camunda 7 forks.

Both serve the Camunda 7 REST API under ``/engine-rest``; the sandbox answers
as each of them (its ``/version``, its Java packages in errors). The worker
needs nothing of its own for them: starts by key and by message, the lookup
after a lost answer, errors and basic auth all go through the same adapter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection

from tests.conftest import make_settings
from tests.support.service import run
from worker.engines import build_engine
from worker.local.sandbox import SandboxServer
from worker.local.sandbox.camunda7 import Camunda7App
from worker.runtime import Runtime, build_runtime
from worker.service import RetryLater
from worker.targets import Targets

PASSWORD = "fork-secret"


@pytest.fixture(scope="module", params=["operaton", "cibseven"])
def fork(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    with SandboxServer("camunda7", camunda7_product=request.param) as server:
        yield server


@pytest.fixture
def app(fork: SandboxServer) -> Iterator[Camunda7App]:
    engine = fork.app("camunda7")
    assert isinstance(engine, Camunda7App)
    engine.reset()
    engine.auth.configure(type="basic", username="startproc", password=PASSWORD)
    yield engine
    engine.reset()


@pytest.fixture
def rt(redis_url: str, fork: SandboxServer, app: Camunda7App) -> Runtime:
    raw = {"engine": "camunda7", "base_url": fork.base_url("camunda7"), "timeout": 5,
           "auth": {"type": "basic", "username": "startproc", "password": PASSWORD}}
    targets = Targets.from_dict({"targets": {"bpm": raw}}, env={})
    runtime = build_runtime(make_settings(redis_url), targets, Connection(redis_url))
    runtime.service.sleep = lambda _s: None
    return runtime


def test_the_base_url_is_the_forks_engine_rest_root(fork: SandboxServer, app: Camunda7App) -> None:
    assert fork.base_url("camunda7").endswith("/engine-rest")
    raw = {"engine": "camunda7", "base_url": fork.base_url("camunda7"),
           "auth": {"type": "basic", "username": "startproc", "password": PASSWORD}}
    engine = build_engine(Targets.from_dict({"targets": {"bpm": raw}}, env={})["bpm"])
    probe = engine.probe_request()
    assert probe is not None
    assert engine.fetch(probe) == {"version": {"operaton": "1.0.0", "cibseven": "2.0.0"}[
        app.product]}


@pytest.mark.parametrize("job", [
    {"process": "invoice", "variables": {"amount": 30}, "business_key": "F-1"},
    {"message": {"name": "invoice-received"}, "variables": {"amount": 30}},
], ids=["by key", "by message"])
def test_starts_and_a_lost_answer_work_as_on_camunda_7(
    rt: Runtime, app: Camunda7App, job: dict[str, Any]
) -> None:
    job = {"target": "bpm", **job}
    app.faults.script([{"drop": "after_commit"}])
    assert isinstance(run(rt, job, "fork-1"), RetryLater)  # the answer was lost
    result = run(rt, job, "fork-1", retries=1)
    assert result.status == "created", result.error
    [instance] = app.instances
    assert result.instance_id == instance["id"] and instance["variables"]["amount"] == 30
    assert app.stats()["start_requests"] == 1  # found by the lookup, not sent again


def test_the_forks_errors_are_classified_alike(rt: Runtime, app: Camunda7App) -> None:
    missing = run(rt, {"target": "bpm", "process": "no-such-key"}, "fork-2")
    assert missing.error is not None
    assert (missing.error.kind, missing.error.http_status) == ("permanent", 404)
    assert "No matching process definition with key: no-such-key" in missing.error.message
    assert app.count() == 0
    app.faults.script([{"status": 500, "code": 1}])  # optimistic locking: retried at once
    rt.service.policy.__dict__["sleep"] = lambda _s: None  # frozen dataclass: tests only
    retried = run(rt, {"target": "bpm", "process": "invoice"}, "fork-3")
    assert retried.status == "created"
    assert app.stats()["start_requests"] == 3  # the 404, the 500, the start
