"""Starts by message through the service: real Redis, the sandbox's engines over HTTP.

The message start events are the sandbox's defaults: Camunda 8 ``order-intake``
starts on ``order-received``, Camunda 7 ``invoice-intake`` on ``invoice-received``.
"""

from __future__ import annotations

from typing import Any

import pytest
from kombu import Connection

from tests.conftest import make_settings, sandbox_targets
from tests.support.service import drain, run
from worker.local.sandbox import SandboxServer
from worker.runtime import Runtime, build_runtime
from worker.service import RetryLater

C8_MESSAGE = {"target": "camunda8", "message": {"name": "order-received", "correlation_key": "A-1"},
              "variables": {"orderId": "A-1"}}
C7_MESSAGE = {"target": "camunda7", "message": {"name": "invoice-received"},
              "variables": {"invoiceId": "INV-1"}, "business_key": "INV-1"}


@pytest.fixture
def rt(redis_url: str, sandbox: SandboxServer) -> Runtime:
    runtime = build_runtime(make_settings(redis_url), sandbox_targets(sandbox),
                            Connection(redis_url))
    runtime.service.sleep = lambda _s: None
    runtime.service.policy.__dict__["sleep"] = lambda _s: None  # frozen dataclass: tests only
    return runtime


@pytest.mark.parametrize(("job", "process"), [(C8_MESSAGE, "order-intake"),
                                              (C7_MESSAGE, "invoice-intake")],
                         ids=["camunda8", "camunda7"])
def test_a_message_job_is_created_with_the_instance_the_message_started(
    rt: Runtime, sandbox: SandboxServer, redis_url: str, job: dict[str, Any], process: str
) -> None:
    result = run(rt, job, "m-1")
    assert result.status == "created", result.error
    [instance] = sandbox.app(job["target"]).instances
    assert result.instance_id == instance["id"] and instance["process"] == process
    assert result.process == f"message:{job['message']['name']}"
    assert [m["instance_id"] for m in drain(redis_url)] == [instance["id"]]



@pytest.mark.parametrize(("job", "key"), [
    ({**C8_MESSAGE, "idempotency_key": "msg-1"}, "msg-1"),
    (C7_MESSAGE, "camunda7:message:invoice-received:INV-1"),
], ids=["camunda8, explicit key", "camunda7, key from the business key"])
def test_the_same_key_again_is_a_duplicate_without_a_second_message(
    rt: Runtime, sandbox: SandboxServer, job: dict[str, Any], key: str
) -> None:
    first = run(rt, job, "m-1")
    again = run(rt, job, "m-2")
    assert first.idempotency_key == key
    assert (again.status, again.instance_id) == ("duplicate", first.instance_id)
    assert sandbox.app(job["target"]).stats()["start_requests"] == 1


@pytest.mark.parametrize("job", [C8_MESSAGE, C7_MESSAGE], ids=["camunda8", "camunda7"])
def test_a_lost_answer_is_reconciled_by_the_key_not_correlated_again(
    rt: Runtime, sandbox: SandboxServer, job: dict[str, Any]
) -> None:
    app = sandbox.app(job["target"])
    app.faults.script([{"drop": "after_commit"}])
    first = run(rt, job, "m-lost")
    assert isinstance(first, RetryLater), first  # ambiguous: the instance may exist
    assert app.count() == 1
    second = run(rt, job, "m-lost", retries=1)
    assert second.status == "created", second.error
    assert second.instance_id == app.instances[0]["id"]
    assert app.stats()["start_requests"] == 1  # found, never sent twice
    assert app.count() == 1


@pytest.mark.parametrize(
    ("job", "status", "words"),
    [
        ({**C8_MESSAGE, "message": {"name": "nobody-listens"}}, 404,
         "Expected to find subscription for message with name 'nobody-listens'"),
        ({**C7_MESSAGE, "message": {"name": "nobody-listens"}}, 400,
         "Cannot correlate message 'nobody-listens'"),
    ],
    ids=["camunda8 404", "camunda7 400"],
)
def test_an_unknown_message_fails_permanent_with_the_engines_answer(
    rt: Runtime, sandbox: SandboxServer, job: dict[str, Any], status: int, words: str
) -> None:
    result = run(rt, job, "m-unknown")
    assert result.status == "failed" and result.error is not None
    assert (result.error.kind, result.error.http_status) == ("permanent", status)
    assert words in result.error.message
    assert isinstance(result.error.engine_error, dict)
    assert sandbox.app(job["target"]).count() == 0
    assert rt.dead_letters.get("m-unknown") is None


@pytest.mark.parametrize("target", ["processmaker4", "blueworks", "tas"])
def test_other_engines_answer_invalid_without_a_call(
    rt: Runtime, sandbox: SandboxServer, target: str
) -> None:
    result = run(rt, {**C8_MESSAGE, "target": target}, "m-invalid")
    assert result.status == "failed" and result.error is not None
    assert result.error.kind == "invalid"
    assert f"{target} cannot start a process by message" in result.error.message
    assert sandbox.app(target).stats()["requests"] == {}


def test_a_job_with_process_and_message_is_invalid(rt: Runtime, sandbox: SandboxServer) -> None:
    result = run(rt, {**C8_MESSAGE, "process": "order-process"}, "m-both")
    assert result.error is not None and result.error.kind == "invalid"
    assert "not both" in result.error.message
    assert sandbox.app("camunda8").stats()["requests"] == {}
