"""The start service driven directly (no Celery): real Redis, real sandbox over HTTP."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from kombu import Connection

from tests.conftest import make_settings, sandbox_targets
from worker.keys import fingerprint
from worker.models import Job
from worker.results import results_queue
from worker.runtime import Runtime, build_runtime
from worker.sandbox import SandboxServer
from worker.service import Delivery, Done, RetryLater

Handle = Callable[..., Any]


@pytest.fixture
def rt(redis_url: str, sandbox: SandboxServer) -> Runtime:
    cfg = make_settings(redis_url, task_max_retries=2)
    targets = sandbox_targets(sandbox, tas={"retry_ambiguous": False})
    runtime = build_runtime(cfg, targets, Connection(redis_url))
    runtime.service.sleep = lambda _s: None
    runtime.service.policy.__dict__["sleep"] = lambda _s: None  # frozen dataclass: tests only
    return runtime


def run(rt: Runtime, job: Any, job_id: str = "job-1", retries: int = 0) -> Any:
    outcome = rt.service.handle(job, Delivery(job_id=job_id, retries=retries))
    return outcome.result if isinstance(outcome, Done) else outcome


def drain(broker_url: str, name: str = "startproc.results") -> list[dict[str, Any]]:
    """Everything on the results queue, consumed the way another app would."""
    messages: list[dict[str, Any]] = []
    with Connection(broker_url) as conn, conn.SimpleQueue(results_queue(name)) as queue:
        while True:
            try:
                message = queue.get(timeout=0.2)
            except queue.Empty:
                return messages
            messages.append(message.payload)
            message.ack()


C8_JOB = {"target": "camunda8", "process": "order-process", "variables": {"orderId": "A-1"}}


def test_created_result_is_recorded_and_published_once(
    rt: Runtime, sandbox: SandboxServer, redis_url: str
) -> None:
    result = run(rt, {**C8_JOB, "business_key": "A-1"})
    assert result.status == "created"
    assert result.instance_id == sandbox.app("camunda8").instances[0]["id"]
    assert result.engine == "camunda8" and result.attempts == 1
    assert result.idempotency_key == "camunda8:order-process:A-1"
    published = drain(redis_url)
    assert [m["job_id"] for m in published] == ["job-1"]
    assert published[0]["status"] == "created"
    assert rt.results.get("job-1") == result
    assert rt.results.get_by_key("camunda8:order-process:A-1", "camunda8") == result
    assert rt.results.pending() == []


def test_redelivered_job_is_not_started_or_published_again(
    rt: Runtime, sandbox: SandboxServer, redis_url: str
) -> None:
    first = run(rt, C8_JOB)
    again = run(rt, C8_JOB)
    assert again == first
    assert sandbox.app("camunda8").count() == 1
    assert len(drain(redis_url)) == 1


def test_same_key_twice_is_a_duplicate_with_the_first_instance(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    job = {**C8_JOB, "idempotency_key": "orders:A-1"}
    first = run(rt, job, "job-1")
    second = run(rt, job, "job-2")
    assert first.status == "created"
    assert second.status == "duplicate"
    assert second.instance_id == first.instance_id
    assert sandbox.app("camunda8").count() == 1


def test_same_key_other_payload_is_a_conflict_without_a_call(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    run(rt, {**C8_JOB, "idempotency_key": "k"}, "job-1")
    calls = sandbox.app("camunda8").stats()
    second = run(rt, {**C8_JOB, "idempotency_key": "k", "variables": {"orderId": "B"}}, "job-2")
    assert second.status == "failed" and second.error.kind == "conflict"
    assert "job-1" in second.error.message
    assert sandbox.app("camunda8").stats() == calls


@pytest.mark.parametrize(
    ("job", "field"),
    [
        ({"process": "p"}, "target"),
        ({"target": "camunda8"}, "process"),
        ({"target": "nope", "process": "p"}, "target"),
        ({"target": "camunda8", "process": "p", "version": "3"}, "version"),
        ({"target": "camunda8", "process": "p", "variables": []}, "variables"),
        ({"target": "camunda8", "process": "p", "idempotency_kye": "x"}, "idempotency_kye"),
        ({"target": "camunda8", "process": "p", "options": {"tgas": ["a"]}}, "options.tgas"),
        ({"target": "camunda8", "process": "p", "variables": {"x": "y" * (1024 * 1024)}}, "larger"),
        ("{not json", "JSON"),
        ([1, 2], "object"),
    ],
)
def test_malformed_jobs_fail_invalid_naming_the_field(
    rt: Runtime, sandbox: SandboxServer, job: Any, field: str
) -> None:
    result = run(rt, job)
    assert result.status == "failed"
    assert result.error.kind == "invalid"
    assert field in result.error.message
    assert sandbox.app("camunda8").count() == 0


def test_unknown_target_suggests_the_closest(rt: Runtime) -> None:
    result = run(rt, {"target": "camunda9", "process": "p"})
    assert "did you mean 'camunda8'" in result.error.message


def test_permanent_error_keeps_the_engine_body(rt: Runtime) -> None:
    result = run(rt, {"target": "camunda8", "process": "missing-process"})
    assert result.status == "failed"
    assert result.error.kind == "permanent"
    assert result.error.http_status == 404
    assert result.error.engine_error["title"] == "NOT_FOUND"


def test_backpressure_is_retried_in_call(rt: Runtime, sandbox: SandboxServer) -> None:
    sandbox.app("camunda8").faults.script([{"status": 503, "retry_after": "0"}, {"status": 429}])
    result = run(rt, C8_JOB)
    assert result.status == "created"
    assert result.attempts == 3
    assert sandbox.app("camunda8").count() == 1


def test_long_outage_asks_for_a_celery_retry_then_exhausts(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    sandbox.app("camunda8").faults.configure(error_rate=1.0, seed=1)
    outcome = run(rt, C8_JOB, retries=0)
    assert isinstance(outcome, RetryLater) and outcome.countdown > 0
    final = run(rt, C8_JOB, retries=2)
    assert final.status == "failed" and final.error.kind == "exhausted"
    assert final.error.http_status == 503
    assert rt.dead_letters.get("job-1")["reason"] == "exhausted"


def test_retry_after_longer_than_the_in_call_cap_goes_to_celery(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    sandbox.app("camunda8").faults.script([{"status": 503, "retry_after": "30"}])
    outcome = run(rt, C8_JOB)
    assert isinstance(outcome, RetryLater)
    assert outcome.countdown >= 30
    assert run(rt, C8_JOB, retries=1).status == "created"


def test_dropped_after_commit_reconciles_instead_of_resending(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    app = sandbox.app("camunda8")
    app.faults.script([{"drop": "after_commit"}])
    outcome = run(rt, C8_JOB)
    assert isinstance(outcome, RetryLater)
    assert app.count() == 1
    result = run(rt, C8_JOB, retries=1)
    assert result.status == "created"
    assert result.instance_id == app.instances[0]["id"]
    assert app.count() == 1


def test_dropped_before_commit_resends_after_an_empty_lookup(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    app = sandbox.app("camunda8")
    app.faults.script([{"drop": "before_commit"}])
    rt.service.reconcile_window = 0.0
    assert isinstance(run(rt, C8_JOB), RetryLater)
    assert app.count() == 0
    assert run(rt, C8_JOB, retries=1).status == "created"
    assert app.count() == 1


def test_oauth2_token_is_cached_and_refreshed_once_on_401(
    redis_url: str, sandbox: SandboxServer
) -> None:
    app = sandbox.app("camunda8")
    app.auth.configure(type="oauth2", client_id="w", client_secret="s3cret", token_ttl=300)
    auth = {
        "type": "oauth2",
        "token_url": sandbox.base_url("camunda8") + "/oauth/token",
        "client_id": "w",
        "client_secret": "s3cret",
    }
    runtime = build_runtime(
        make_settings(redis_url),
        sandbox_targets(sandbox, camunda8={"auth": auth}),
        Connection(redis_url),
    )
    assert run(runtime, C8_JOB, "a").status == "created"
    assert run(runtime, {**C8_JOB, "variables": {"n": 2}}, "b").status == "created"
    app.auth.expire_tokens()
    assert run(runtime, {**C8_JOB, "variables": {"n": 3}}, "c").status == "created"
    assert app.stats()["token_requests"] == 2


def test_results_never_contain_secrets(
    redis_url: str, sandbox: SandboxServer, redis_client: Any
) -> None:
    sandbox.app("camunda8").auth.configure(
        type="oauth2", client_id="w", client_secret="right", token_ttl=300
    )
    auth = {
        "type": "oauth2",
        "token_url": sandbox.base_url("camunda8") + "/oauth/token",
        "client_id": "w",
        "client_secret": "TOPSECRET-value",
    }
    runtime = build_runtime(
        make_settings(redis_url),
        sandbox_targets(sandbox, camunda8={"auth": auth}),
        Connection(redis_url),
    )
    result = run(runtime, C8_JOB)
    assert result.status == "failed" and result.error.kind == "permanent"
    everything = json.dumps([redis_client.get(k) for k in redis_client.keys("startproc:result:*")])
    assert "TOPSECRET" not in everything and "TOPSECRET" not in repr(runtime.targets["camunda8"])


LOOKUP_JOBS = [
    {"target": "camunda8", "process": "order-process", "variables": {"a": 1}},
    {"target": "camunda7", "process": "invoice", "variables": {"a": 1}},
    {
        "target": "camunda7",
        "process": "invoice",
        "variables": {"a": 1},
        "business_key": "B-1",
        "idempotency_key": "explicit-1",
    },
    {
        "target": "processmaker4",
        "process": "1",
        "variables": {"a": 1},
        "options": {"event": "node_1"},
    },
]


@pytest.mark.parametrize("job", LOOKUP_JOBS, ids=lambda j: f"{j['target']}-{j.get('business_key')}")
def test_every_engine_with_a_lookup_reconciles_a_lost_answer(
    rt: Runtime, sandbox: SandboxServer, job: dict[str, Any]
) -> None:
    app = sandbox.app(job["target"])
    app.faults.script([{"drop": "after_commit"}])
    assert isinstance(run(rt, job), RetryLater)
    result = run(rt, job, retries=1)
    assert result.status == "created"
    assert app.count() == 1
    assert result.instance_id == app.instances[0]["id"]


@pytest.mark.parametrize("target", ["blueworks", "tas"])
def test_engines_without_lookup_send_ambiguity_to_the_dlq(
    rt: Runtime, sandbox: SandboxServer, target: str
) -> None:
    job = {"target": "tas", "process": "27", "variables": {"amount": 1}}
    if target == "blueworks":
        job = {"target": "blueworks", "process": "5f500e12a00ee", "business_key": "S-1"}
    sandbox.app(target).faults.script([{"drop": "after_commit"}])
    result = run(rt, job)
    assert result.status == "failed" and result.error.kind == "ambiguous"
    assert rt.dead_letters.get("job-1")["reason"] == "ambiguous"
    assert sandbox.app(target).count() == 1


def test_retry_ambiguous_opt_in_resends(redis_url: str, sandbox: SandboxServer) -> None:
    targets = sandbox_targets(sandbox, tas={"retry_ambiguous": True})
    runtime = build_runtime(make_settings(redis_url), targets, Connection(redis_url))
    runtime.service.sleep = lambda _s: None
    sandbox.app("tas").faults.script([{"drop": "before_commit"}])
    job = {"target": "tas", "process": "27", "variables": {"amount": 1}}
    assert isinstance(run(runtime, job), RetryLater)
    assert run(runtime, job, retries=1).status == "created"
    assert sandbox.app("tas").count() == 1


def test_lookup_by_key_without_target_is_literal(rt: Runtime) -> None:
    run(rt, {**C8_JOB, "idempotency_key": "shop:1"}, "job-a")
    run(rt, {**C8_JOB, "variables": {"x": 1}, "idempotency_key": "1"}, "job-b")
    assert rt.results.get_by_key("shop:1").job_id == "job-a"
    assert rt.results.get_by_key("1").job_id == "job-b"
    assert rt.results.get_by_key("shop:*") is None
    assert rt.results.get_by_key("*") is None


def test_a_redriven_job_counts_its_earlier_planned_retries_as_not_lost(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    """Re-driven by the sweeper, a job arrives with ``retries = 0`` after real retries."""
    rt.service.max_deliveries = 2
    job = {**C8_JOB, "business_key": "redriven"}
    sandbox.app("camunda8").faults.script([{"status": 503, "retry_after": "30"}] * 2)
    assert isinstance(run(rt, job, job_id="r-1", retries=0), RetryLater)
    assert isinstance(run(rt, job, job_id="r-1", retries=1), RetryLater)
    redriven = run(rt, job, job_id="r-1", retries=0)
    assert redriven.status == "created", redriven.error


def test_deliveries_that_never_ended_are_poison(rt: Runtime) -> None:
    from worker.keys import deliveries_key

    rt.service.max_deliveries = 2
    rt.service.ledger.client.set(deliveries_key("p-1"), 2)  # two earlier deliveries died mid-job
    result = run(rt, {**C8_JOB, "business_key": "poison"}, job_id="p-1")
    assert result.status == "failed" and result.error.kind == "exhausted"
    assert "lost 2 times" in result.error.message


def test_a_takeover_long_after_a_dead_holders_send_looks_up_once(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    """The lease outlived the reconcile window: one lookup, no polling, then the send."""
    naps: list[float] = []
    rt.service.sleep = naps.append
    job = {**C8_JOB, "business_key": "long-dead"}
    ledger = rt.service.ledger
    key = "camunda8:order-process:long-dead"
    claim = ledger.claim("camunda8", key, fingerprint(Job.parse(job).payload()), "dead-job")
    ledger.mark_sending("camunda8", key, claim.fence)  # ...and then it died, an hour ago
    an_hour_ago = int((time.time() - 3600) * 1000)
    ledger.client.hset(
        f"startproc:ledger:camunda8:{key}",
        mapping={"lease_until": 0, "updated_at": an_hour_ago},
    )
    result = run(rt, job, job_id="taker")
    assert result.status == "created" and result.attempts == 2
    assert naps == []  # no polling
    assert sandbox.app("camunda8").count() == 1


def test_a_fresh_lost_answer_is_looked_up_for_the_whole_window(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    naps: list[float] = []
    rt.service.sleep = naps.append
    rt.service.reconcile_window = 0.5
    app = sandbox.app("camunda8")
    app.faults.script([{"drop": "before_commit"}])  # nothing created, the answer lost
    job = {**C8_JOB, "business_key": "fresh-loss"}
    assert isinstance(run(rt, job, job_id="fresh"), RetryLater)
    assert run(rt, job, job_id="fresh", retries=1).status == "created"
    assert naps, "the lookup should have been repeated within the window"
    assert app.count() == 1


def test_an_absurd_retry_after_is_capped_and_the_job_stays_within_the_sweepers_reach(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    """The countdown and the in-flight deadline both stay bounded, whatever the engine says."""
    from worker.keys import INFLIGHT_DEADLINES

    sandbox.app("camunda8").faults.script([{"status": 503, "retry_after": "300000000000"}])
    outcome = run(rt, C8_JOB, job_id="absurd")
    assert isinstance(outcome, RetryLater)
    assert outcome.countdown <= rt.service.policy.task_backoff_max
    deadline = rt.service.ledger.client.zscore(INFLIGHT_DEADLINES, "absurd")
    horizon = rt.service.policy.task_backoff_max + rt.service.decide_within
    assert deadline is not None and deadline <= time.time() + horizon
    assert run(rt, C8_JOB, job_id="absurd", retries=1).status == "created"


def test_a_job_names_its_worker_process_until_it_is_decided_or_waits_in_the_broker(
    rt: Runtime, sandbox: SandboxServer, redis_client: Any
) -> None:
    from worker.keys import INFLIGHT_HOLDERS, alive_key

    holder = rt.service.holder()
    assert holder.endswith(f":{os.getpid()}")
    ttl_ms = redis_client.pttl(alive_key(holder))
    assert 0 < ttl_ms <= rt.settings.liveness_ttl * 1000
    rt.service._arrive(C8_JOB, Delivery(job_id="held"))
    assert redis_client.hgetall(INFLIGHT_HOLDERS) == {"held": holder}
    sandbox.app("camunda8").faults.script([{"status": 503, "retry_after": "30"}])
    assert isinstance(run(rt, C8_JOB, job_id="held"), RetryLater)
    assert redis_client.hgetall(INFLIGHT_HOLDERS) == {}  # a planned retry: nobody runs it
    assert run(rt, C8_JOB, job_id="held", retries=1).status == "created"
    assert redis_client.hgetall(INFLIGHT_HOLDERS) == {}
    assert redis_client.hget("startproc:ledger:camunda8:job:held", "holder") == holder
