"""The lease and the engine call: credentials before a send is marked, one deadline per call.

A send marked in the ledger starts the lease a takeover waits out before it
reconciles and sends again. Anything slow between the mark and the send (a
token fetch) or after it (an answer trickling in) must not outlive that lease.
Driven through the service with a real Redis and the Camunda 8 sandbox.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection

from tests.conftest import make_settings, sandbox_targets
from tests.support.service import run
from worker.local.sandbox import SandboxServer
from worker.local.sandbox.camunda8 import Camunda8App
from worker.runtime import Runtime, build_runtime
from worker.service import RetryLater

SECRET = "s3cret-of-the-worker"
JOB = {"target": "camunda8", "process": "order-process", "business_key": "L-1"}
KEY = "camunda8:order-process:L-1"


@pytest.fixture
def c8(sandbox: SandboxServer) -> Iterator[Camunda8App]:
    app = sandbox.app("camunda8")
    assert isinstance(app, Camunda8App)
    app.auth.configure(type="oauth2", client_id="w", client_secret=SECRET, token_ttl=300)
    yield app
    app.faults.reset()  # releases a token request still held by a failed test


def runtime(redis_url: str, sandbox: SandboxServer, **target: Any) -> Runtime:
    auth = {
        "type": "oauth2",
        "token_url": sandbox.base_url("camunda8") + "/oauth/token",
        "client_id": "w",
        "client_secret": SECRET,
    }
    targets = sandbox_targets(sandbox, camunda8={"auth": auth, **target})
    rt = build_runtime(make_settings(redis_url), targets, Connection(redis_url))
    rt.service.sleep = lambda _s: None
    rt.service.policy.__dict__["sleep"] = lambda _s: None  # frozen dataclass: tests only
    return rt


def in_background(
    rt: Runtime, job: dict[str, Any], job_id: str
) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(run(rt, job, job_id)), daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize(
    "rate_limit", [None, "1000/s"], ids=["the claim marks the send", "the send is marked later"]
)
def test_a_slow_token_endpoint_is_waited_for_before_the_send_is_marked(
    redis_url: str, sandbox: SandboxServer, c8: Camunda8App, rate_limit: str | None
) -> None:
    rt = runtime(redis_url, sandbox, **({"rate_limit": rate_limit} if rate_limit else {}))
    c8.faults.configure(token_latency_ms=600_000)
    job = {**JOB, "business_key": f"L-{bool(rate_limit)}"}  # apart from a failed run's thread
    thread, outcome = in_background(rt, job, f"slow-token-{bool(rate_limit)}")
    assert c8.counters.wait_for_kind("token", 1, timeout=10)
    entry = rt.service.ledger.get("camunda8", f"camunda8:order-process:L-{bool(rate_limit)}")
    assert "sent_fence" not in entry, f"the send was marked while the token was fetched: {entry}"
    assert int(entry.get("attempts", 0)) == 0
    c8.faults.configure(token_latency_ms=0)
    thread.join(30)
    [result] = outcome
    assert result.status == "created" and result.attempts == 1
    assert c8.count() == 1


def test_a_token_fetched_again_after_a_401_is_in_place_before_the_resend_is_marked(
    redis_url: str, sandbox: SandboxServer, c8: Camunda8App
) -> None:
    rt = runtime(redis_url, sandbox)
    assert run(rt, {**JOB, "business_key": "L-0"}, "warm-up").status == "created"
    c8.auth.expire_tokens()  # the cached token is refused: 401, then one refresh
    c8.faults.configure(token_latency_ms=600_000)
    thread, outcome = in_background(rt, JOB, "after-401")
    assert c8.counters.wait_for_kind("token", 2, timeout=10)
    assert rt.service.ledger.get("camunda8", KEY)["attempts"] == "1"  # the refused send
    c8.faults.configure(token_latency_ms=0)
    thread.join(30)
    [result] = outcome
    assert result.status == "created"
    assert result.attempts == 2, "the resend after the new token must be marked (a fresh lease)"
    assert c8.count() == 2


def test_a_duplicate_costs_no_token_request(
    redis_url: str, sandbox: SandboxServer, c8: Camunda8App
) -> None:
    rt = runtime(redis_url, sandbox)
    first = run(rt, JOB, "first")
    rt.service.engines.get("camunda8").credentials.invalidate()  # as if the token had expired
    again = run(rt, JOB, "again")
    assert (first.status, again.status) == ("created", "duplicate")
    assert c8.stats()["token_requests"] == 1


def test_a_trickling_answer_is_cut_at_the_call_deadline_and_reconciled(
    redis_url: str, sandbox: SandboxServer
) -> None:
    """Every read is quick (a byte each 40 ms, well inside the 1 s read timeout), the
    whole answer is not (about 10 s): the call ends at connect_timeout + timeout."""
    deadline = 0.5 + 1.0
    targets = sandbox_targets(sandbox, camunda8={"connect_timeout": 0.5, "timeout": 1.0})
    rt = build_runtime(make_settings(redis_url), targets, Connection(redis_url))
    rt.service.sleep = lambda _s: None
    app = sandbox.app("camunda8")
    app.faults.script([{"trickle_ms": 40}])
    started = time.monotonic()
    outcome = run(rt, JOB, "trickled")
    elapsed = time.monotonic() - started
    assert isinstance(outcome, RetryLater), outcome
    assert "deadline" in outcome.reason and "may exist" in outcome.reason
    assert elapsed < deadline + 2.0, f"the call took {elapsed:.1f}s"
    assert rt.service.ledger.get("camunda8", KEY)["state"] == "AMBIGUOUS"
    assert app.count() == 1  # the engine had committed it
    result = run(rt, JOB, "trickled", retries=1)
    assert result.status == "created"
    assert result.instance_id == app.instances[0]["id"] and app.count() == 1
