"""Camunda 8 starts pinned by version tag through the service: real Redis, the sandbox.

The sandbox's ``order-process`` has versions 1 (tag ``1.0``), 2 and 3 (both ``2.0``).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kombu import Connection

from tests.conftest import make_settings, sandbox_targets
from tests.support.service import run
from worker.engines.camunda8 import Camunda8
from worker.local.sandbox import SandboxServer
from worker.runtime import Runtime, build_runtime

SEARCH = "POST /v2/process-definitions/search"


@pytest.fixture
def rt(redis_url: str, sandbox: SandboxServer) -> Runtime:
    runtime = build_runtime(make_settings(redis_url), sandbox_targets(sandbox),
                            Connection(redis_url))
    runtime.service.sleep = lambda _s: None
    return runtime


def pinned(tag: str, **fields: Any) -> dict[str, Any]:
    return {"target": "camunda8", "process": "order-process",
            "options": {"version_tag": tag}, **fields}


@pytest.mark.parametrize(("tag", "version"), [("1.0", 1), ("2.0", 3)])
def test_a_pinned_job_starts_the_newest_version_carrying_the_tag(
    rt: Runtime, sandbox: SandboxServer, tag: str, version: int
) -> None:
    result = run(rt, pinned(tag), f"v-{tag}")
    assert result.status == "created", result.error
    [instance] = sandbox.app("camunda8").instances
    assert (instance["id"], instance["version"]) == (result.instance_id, version)
    assert "processDefinitionKey" in instance["request"]


def test_the_tag_is_searched_once_for_many_jobs(rt: Runtime, sandbox: SandboxServer) -> None:
    for n in range(4):
        assert run(rt, pinned("2.0", variables={"n": n}), f"v-{n}").status == "created"
    app = sandbox.app("camunda8")
    assert app.stats()["requests"][SEARCH] == 1
    assert {i["version"] for i in app.instances} == {3} and app.count() == 4


def test_an_unknown_tag_fails_permanent_without_a_start(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    result = run(rt, pinned("9.9"), "v-unknown")
    assert result.status == "failed" and result.error is not None
    assert result.error.kind == "permanent"
    assert "has version tag '9.9'" in result.error.message
    assert sandbox.app("camunda8").stats()["start_requests"] == 0
    assert rt.dead_letters.get("v-unknown") is None


def test_a_newer_deployment_with_the_tag_is_picked_up_once_the_cache_expires(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    app = sandbox.app("camunda8")
    process = f"pinned-{uuid.uuid4().hex[:8]}"  # deployments outlive a sandbox reset
    app.deploy(process, 1, version_tag="green")
    assert run(rt, {**pinned("green"), "process": process}, "p-1").status == "created"
    app.deploy(process, 2, version_tag="green")
    assert run(rt, {**pinned("green"), "process": process}, "p-2").status == "created"
    engine = rt.service.engines.get("camunda8")
    assert isinstance(engine, Camunda8)
    engine.definition_keys.ttl = 0.0  # as if a minute had passed
    assert run(rt, {**pinned("green"), "process": process}, "p-3").status == "created"
    assert [i["version"] for i in app.instances] == [1, 1, 2]
