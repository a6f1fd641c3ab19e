"""Starts by message end to end: a real Celery worker, Redis, the sandbox (demo targets).

``orders`` is Camunda 8 (OAuth2), ``invoices`` Camunda 7 (basic auth),
``onboarding`` ProcessMaker 4; the sandbox's message start events are
``order-received`` (C8) and ``invoice-received`` (C7).
"""

from __future__ import annotations

import pytest

import worker
from tests.integration.conftest import Pipeline
from tests.support.service import drain
from worker.local.sandbox import SandboxServer


@pytest.mark.parametrize(
    ("target", "engine", "message", "process"),
    [("orders", "camunda8", {"name": "order-received", "correlation_key": "E-1"},
      "order-intake"),
     ("invoices", "camunda7", {"name": "invoice-received"}, "invoice-intake")],
    ids=["camunda8", "camunda7"],
)
def test_a_message_job_starts_the_process_of_its_start_event(
    live: Pipeline, sandbox: SandboxServer, target: str, engine: str,
    message: dict[str, str], process: str,
) -> None:
    drain(live.broker_url, live.results_queue)
    app = sandbox.app(engine)
    app.faults.script([{"drop": "after_commit"}])  # and its first answer is lost
    job_id = worker.enqueue({"target": target, "message": message, "business_key": "E-1",
                             "variables": {"orderId": "E-1"}})
    result = live.wait(job_id)
    assert result.status == "created", result.error
    [instance] = app.instances
    assert (result.instance_id, instance["process"]) == (instance["id"], process)
    assert instance["variables"]["orderId"] == "E-1"
    assert result.process == f"message:{message['name']}"
    assert app.stats()["start_requests"] - app.stats()["unauthorized"] == 1  # found, not resent
    [published] = [m for m in drain(live.broker_url, live.results_queue)
                   if m["job_id"] == job_id]
    assert published["instance_id"] == instance["id"]


def test_an_unknown_message_and_an_engine_without_messages_fail_with_reasons(
    live: Pipeline, sandbox: SandboxServer
) -> None:
    unknown = worker.enqueue({"target": "orders", "message": {"name": "nobody-listens"}})
    elsewhere = worker.enqueue({"target": "onboarding", "message": {"name": "order-received"}})
    first, second = live.wait(unknown), live.wait(elsewhere)
    assert first.error is not None and second.error is not None
    assert (first.status, first.error.kind, first.error.http_status) == (
        "failed", "permanent", 404)
    assert (second.status, second.error.kind) == ("failed", "invalid")
    assert "processmaker4 cannot start a process by message" in second.error.message
    assert sandbox.app("camunda8").count() == 0
    assert sandbox.app("processmaker4").stats()["requests"] == {}
