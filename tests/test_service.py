"""The start service driven directly (no Celery): real Redis, real sandbox over HTTP."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kombu import Connection

from tests.conftest import make_settings, sandbox_targets
from tests.support.service import C8_JOB, drain, run
from worker.keys import fingerprint, ledger_key
from worker.local.sandbox import SandboxServer
from worker.models import Job
from worker.runtime import Runtime, build_runtime
from worker.service import RetryLater

Handle = Callable[..., Any]


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


@pytest.mark.parametrize(
    ("second_send", "second_outcome"),
    [({"status": 503}, "retry"), ({"status": 403, "title": "FORBIDDEN"}, "failed")],
)
def test_a_lost_answer_is_reconciled_even_after_a_later_send_was_settled(
    rt: Runtime, sandbox: SandboxServer, second_send: dict[str, Any], second_outcome: str
) -> None:
    """The first send landed but the search did not show it yet; the resend was
    refused (503: nothing created, or 403). The next claim must look again first."""
    rt.service.reconcile_window = 0.0
    app = sandbox.app("camunda8")
    app.faults.configure(search_lag_ms=3_600_000)
    sends = rt.service.policy.attempts if second_outcome == "retry" else 1
    app.faults.script([{"drop": "after_commit"}, *[second_send] * sends])
    job = {**C8_JOB, "business_key": "lost-then-settled"}
    assert isinstance(run(rt, job, job_id="j-1"), RetryLater)
    assert app.count() == 1
    second = run(rt, job, job_id="j-1", retries=1)
    if second_outcome == "retry":
        assert isinstance(second, RetryLater)
    else:
        assert second.status == "failed" and second.error.kind == "permanent"
    app.faults.configure(search_lag_ms=0)  # the lost instance shows up in search
    later = run(rt, job, job_id="j-1" if second_outcome == "retry" else "j-2", retries=2)
    assert later.status == "created"
    assert later.instance_id == app.instances[0]["id"]
    assert app.count() == 1


def test_a_ledger_entry_lost_while_the_start_is_in_flight_keeps_its_success(
    rt: Runtime, sandbox: SandboxServer, redis_client: Any
) -> None:
    """Redis lost the claim (failover to a lagging replica, the last second of an
    ``everysec`` AOF, an OOM restart) while the engine was creating the instance: the
    success is recorded all the same, so the next job with the key is a duplicate."""
    app = sandbox.app("camunda8")
    app.faults.script([{"latency_ms": 1500}])
    job = {**C8_JOB, "idempotency_key": "lost-entry"}
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(run, rt, job, "job-1")
        assert app.wait_for_start_requests(1, timeout=10)
        assert redis_client.delete(ledger_key("camunda8", "lost-entry")) == 1
        assert app.count() == 0, "the entry must be lost before the engine answers"
        created = first.result(timeout=30)
    assert created.status == "created"
    second = run(rt, job, "job-2")
    assert second.status == "duplicate" and second.instance_id == created.instance_id
    assert app.count() == 1


def test_a_ledger_entry_lost_before_an_ambiguous_answer_is_still_reconciled(
    rt: Runtime, sandbox: SandboxServer, redis_client: Any
) -> None:
    """The same loss, and the answer is lost too: the AMBIGUOUS outcome rebuilds the
    entry, so the retry looks the instance up instead of starting a fresh key."""
    app = sandbox.app("camunda8")
    app.faults.script([{"drop": "after_commit", "latency_ms": 1500}])
    job = {**C8_JOB, "idempotency_key": "lost-then-dropped"}
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(run, rt, job, "job-1")
        assert app.wait_for_start_requests(1, timeout=10)
        assert redis_client.delete(ledger_key("camunda8", "lost-then-dropped")) == 1
        assert app.count() == 0, "the entry must be lost before the engine answers"
        assert isinstance(first.result(timeout=30), RetryLater)
    result = run(rt, job, "job-1", retries=1)
    assert result.status == "created" and result.instance_id == app.instances[0]["id"]
    assert app.count() == 1


DROPPED = {"drop": "after_commit"}


@pytest.mark.parametrize("job", LOOKUP_JOBS, ids=lambda j: f"{j['target']}-{j.get('business_key')}")
def test_a_lookup_answering_503_once_is_retried_like_a_start(
    rt: Runtime, sandbox: SandboxServer, job: dict[str, Any]
) -> None:
    app = sandbox.app(job["target"])
    app.faults.script([DROPPED, {"status": 503, "on": "lookup"}])
    assert isinstance(run(rt, job), RetryLater)
    result = run(rt, job, retries=1)
    assert result.status == "created", result.error
    assert result.instance_id == app.instances[0]["id"]
    assert app.count() == 1


def test_a_lookups_retry_after_sets_the_countdown(rt: Runtime, sandbox: SandboxServer) -> None:
    app = sandbox.app("camunda8")
    app.faults.script([DROPPED, {"status": 503, "retry_after": "30", "on": "lookup"}])
    assert isinstance(run(rt, C8_JOB), RetryLater)
    later = run(rt, C8_JOB, retries=1)
    assert isinstance(later, RetryLater) and later.countdown >= 30
    assert run(rt, C8_JOB, retries=2).status == "created"
    assert app.count() == 1


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("target", ["camunda8", "processmaker4"])
def test_a_lookup_refused_for_good_ends_ambiguous_in_the_dlq(
    rt: Runtime, sandbox: SandboxServer, status: int, target: str
) -> None:
    """A start-only role may create instances but not search them: whether the lost
    attempt created one is for a person to check, never a "permanent" failure."""
    job = next(j for j in LOOKUP_JOBS if j["target"] == target)
    app = sandbox.app(target)
    app.faults.script([DROPPED, {"status": status, "on": "lookup"}])
    assert isinstance(run(rt, job), RetryLater)
    result = run(rt, job, retries=1)
    assert result.status == "failed" and result.error.kind == "ambiguous"
    assert result.error.http_status == status
    assert "earlier attempt" in result.error.message
    assert rt.dead_letters.get("job-1")["reason"] == "ambiguous"
    assert app.count() == 1


def test_a_lookup_that_keeps_failing_exhausts_as_ambiguous(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    app = sandbox.app("camunda8")
    attempts = rt.service.policy.attempts
    app.faults.script([DROPPED] + [{"status": 503, "on": "lookup"}] * (2 * attempts))
    assert isinstance(run(rt, C8_JOB), RetryLater)
    assert isinstance(run(rt, C8_JOB, retries=1), RetryLater)
    final = run(rt, C8_JOB, retries=2)
    assert final.status == "failed" and final.error.kind == "ambiguous"
    assert final.error.http_status == 503
    assert rt.dead_letters.get("job-1")["reason"] == "ambiguous"
    assert app.stats()["lookup_requests"] == 2 * attempts
    assert rt.service.ledger.get("camunda8", "job:job-1")["state"] == "AMBIGUOUS"


def test_a_job_id_in_the_job_is_its_one_identity_everywhere(
    rt: Runtime, sandbox: SandboxServer
) -> None:
    """A foreign app sends its own ``job_id``, and Celery gives the message another task
    id: the job is registered, counted, decided and cleared under the one id, so the
    sweeper has nothing left to re-drive."""
    from worker.delivery.sweeper import sweep

    job = {**C8_JOB, "business_key": "foreign", "job_id": "foreign-7"}
    sandbox.app("camunda8").faults.script([{"status": 503, "retry_after": "30"}])
    assert isinstance(run(rt, job, job_id="celery-task-1"), RetryLater)
    result = run(rt, job, job_id="celery-task-1", retries=1)
    assert result.status == "created" and result.job_id == "foreign-7"
    assert rt.service.inflight.size() == 0
    assert run(rt, job, job_id="celery-task-1") == result  # a redelivery of the message
    assert rt.service.inflight.size() == 0
    redriven: list[dict[str, Any]] = []
    report = sweep(rt.results, rt.service.inflight, redriven.extend, now=time.time() + 86400)
    assert report.redriven == 0 and redriven == []
    assert sandbox.app("camunda8").count() == 1


@pytest.mark.parametrize("job_id", ["bad id!", 17])
def test_an_invalid_job_id_is_reported_under_the_task_id(rt: Runtime, job_id: Any) -> None:
    result = run(rt, {**C8_JOB, "job_id": job_id}, job_id="celery-task-2")
    assert result.status == "failed" and result.error.kind == "invalid"
    assert result.job_id == "celery-task-2" and "job_id" in result.error.message
    assert rt.service.inflight.size() == 0


ENGINES = ("camunda8", "camunda7", "processmaker4", "blueworks", "tas")
PM4_JOB = {"target": "processmaker4", "process": "1", "options": {"event": "node_1"}}
BW_JOB = {"target": "blueworks", "process": "5f500e12a00ee", "business_key": "S-1"}


@pytest.mark.parametrize(
    ("job", "field"),
    [
        ({**C8_JOB, "variables": {"amount": float("nan")}}, "variables.amount"),
        ({"target": "camunda7", "process": "invoice", "variables": {"a": [float("inf")]}}, "a"),
        ({**PM4_JOB, "variables": {"x": {"y": -float("inf")}}}, "variables.x"),
        ({"target": "tas", "process": "27", "variables": {"amount": float("nan")}}, "amount"),
        ({**BW_JOB, "options": {"subject": "{n}"}, "variables": {"n": float("nan")}}, "n"),
        ({**C8_JOB, "options": {"request_timeout": float("inf")}}, "options.request_timeout"),
        # JSON text as Python's json and kombu decode it: NaN and Infinity are accepted there
        ('{"target": "camunda8", "process": "order-process", "variables": {"x": NaN}}', "x"),
        ({**BW_JOB, "options": {"on_behalf_of": "alice\r\nX-Evil: 1"}}, "options.on_behalf_of"),
        ({**BW_JOB, "options": {"on_behalf_of": "alice\n"}}, "options.on_behalf_of"),
    ],
    ids=["c8-nan", "c7-inf", "pm4-neg-inf", "tas-nan", "bw-nan", "c8-option-inf", "json-text",
         "bw-crlf-header", "bw-lf-header"],
)
def test_values_http_cannot_carry_are_invalid_before_the_claim(
    rt: Runtime, sandbox: SandboxServer, redis_client: Any, job: Any, field: str
) -> None:
    """NaN/Infinity (no JSON number) and CR/LF in a header-bound option fail only while
    requests prepares the send, which looked like "connection lost after sending"."""
    result = run(rt, job)
    assert not isinstance(result, RetryLater), "decided at once, not retried"
    assert result.status == "failed" and result.error.kind == "invalid", result.error
    assert field in result.error.message
    assert result.attempts == 0
    assert redis_client.keys("startproc:ledger:*") == []  # decided before the claim
    assert rt.dead_letters.get("job-1") is None
    assert [sandbox.app(name).stats()["start_requests"] for name in ENGINES] == [0] * 5


C7_JOB = {"target": "camunda7", "process": "invoice", "variables": {"amount": 30}}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"tenant_id": ".."}, "tenant_id"),
        ({"tenant_id": "."}, "tenant_id"),
        ({"process": ".."}, "process"),
        ({"process": "."}, "process"),
        ({"options": {"process_definition_id": ".."}}, "options.process_definition_id"),
    ],
)
def test_a_dot_path_segment_is_invalid_not_normalised_away(
    rt: Runtime, sandbox: SandboxServer, fields: dict[str, Any], field: str
) -> None:
    """``/tenant-id/../start`` reaches the engine as ``/start`` (the HTTP stack removes
    dot segments, even percent-encoded ones): the instance would start without its tenant."""
    result = run(rt, {**C7_JOB, **fields})
    assert result.status == "failed" and result.error.kind == "invalid", result.error
    assert result.error.message.startswith(field)
    assert sandbox.app("camunda7").stats()["start_requests"] == 0
    assert sandbox.app("camunda7").count() == 0


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
    rt.service.deliveries.arrive("held", C8_JOB, 0, holder)
    assert redis_client.hgetall(INFLIGHT_HOLDERS) == {"held": holder}
    sandbox.app("camunda8").faults.script([{"status": 503, "retry_after": "30"}])
    assert isinstance(run(rt, C8_JOB, job_id="held"), RetryLater)
    assert redis_client.hgetall(INFLIGHT_HOLDERS) == {}  # a planned retry: nobody runs it
    assert run(rt, C8_JOB, job_id="held", retries=1).status == "created"
    assert redis_client.hgetall(INFLIGHT_HOLDERS) == {}
    assert redis_client.hget("startproc:ledger:camunda8:job:held", "holder") == holder
