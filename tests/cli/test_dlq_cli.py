"""Settling dead letters through the real CLI and a real worker: replay, resolve, delete.

"After retention" is what Redis does when a TTL runs out: the ledger entry and
the result of the dead job are gone while the dead letter stays. The tests
delete exactly those two keys.
"""

from __future__ import annotations

import json

import redis

import worker
from tests.integration.conftest import Pipeline
from tests.support.cli import startproc
from tests.support.service import drain
from worker.keys import ledger_key, result_key

TAS = {"target": "cases", "process": "27", "variables": {"amount": 1}}


def dead_letter(live: Pipeline, job: dict[str, object]) -> str:
    """Run ``job`` through the worker into the dead-letter store; its job id."""
    job_id = worker.enqueue(job)
    result = live.wait(job_id, timeout=60)
    assert result.status == "failed" and result.error is not None, result
    assert result.error.kind == "ambiguous", result.error
    listed = json.loads(startproc("dlq", "list", "--json", env=live.env).stdout)
    assert [e["job_id"] for e in listed] == [job_id]
    return job_id


def forget(live: Pipeline, target: str, key: str, job_id: str) -> None:
    """What the retention does to a dead job: its ledger entry and its result expire."""
    client = redis.Redis.from_url(live.env["STARTPROC_REDIS_URL"])
    assert client.delete(ledger_key(target, key), result_key(job_id)) == 2


def test_a_replay_after_the_ledger_forgot_the_key_looks_up_before_sending(
    live: Pipeline,
) -> None:
    """The ninth delivery's answer is lost after the engine committed: a dead letter with an
    instance. Once the ledger entry has expired, a replay must find that instance, not send."""
    app = live.sandbox.app("camunda8")
    app.faults.script([{"status": 503}] * 32 + [{"drop": "after_commit"}])  # 8 retries x 4
    job = {"target": "orders", "process": "order-process", "business_key": "LATE-1"}
    job_id = dead_letter(live, job)
    assert app.count() == 1
    forget(live, "orders", "orders:order-process:LATE-1", job_id)

    replayed = startproc("dlq", "replay", job_id, "--json", env=live.env)
    assert replayed.returncode == 0, replayed.stderr
    answer = json.loads(replayed.stdout)
    result = live.wait(answer["job_id"])
    assert app.count() == 1  # looked up, not sent again
    assert result.status == "created" and result.instance_id == app.instances[0]["id"]
    assert answer["replayed"] == job_id and answer["ledger"] == "UNKNOWN"


def test_a_dead_letter_on_an_engine_without_lookup_is_resolved_as_created(
    live: Pipeline,
) -> None:
    app = live.sandbox.app("tas")
    app.faults.script([{"drop": "after_commit"}])
    job_id = dead_letter(live, {**TAS, "business_key": "T-1"})
    [instance] = app.instances

    refused = startproc("dlq", "replay", job_id, env=live.env)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "--created" in refused.stderr and "--not-created" in refused.stderr
    assert app.count() == 1

    resolved = startproc(
        "dlq", "resolve", job_id, "--created", str(instance["id"]), "--json", env=live.env
    )
    assert resolved.returncode == 0, resolved.stderr
    assert json.loads(resolved.stdout) == {
        "job_id": job_id,
        "resolution": "created",
        "instance_id": str(instance["id"]),
        "result_published": False,  # the job already had its one result (failed, ambiguous)
    }
    assert json.loads(startproc("dlq", "list", "--json", env=live.env).stdout) == []
    again = live.wait(worker.enqueue({**TAS, "business_key": "T-1"}))
    assert again.status == "duplicate" and again.instance_id == str(instance["id"])
    assert app.count() == 1


def test_not_created_lets_the_next_replay_send(live: Pipeline) -> None:
    app = live.sandbox.app("tas")
    app.faults.script([{"drop": "before_commit"}])
    job_id = dead_letter(live, {**TAS, "business_key": "T-2"})
    assert app.count() == 0

    resolved = startproc("dlq", "resolve", job_id, "--not-created", "--json", env=live.env)
    assert resolved.returncode == 0, resolved.stderr
    assert json.loads(resolved.stdout)["resolution"] == "not_created"
    shown = json.loads(startproc("dlq", "show", job_id, "--json", env=live.env).stdout)
    assert shown["resolution"] == "not_created"

    replayed = startproc("dlq", "replay", job_id, "--json", env=live.env)
    assert replayed.returncode == 0, replayed.stderr
    answer = json.loads(replayed.stdout)
    assert answer["ledger"] == "RELEASED"
    assert live.wait(answer["job_id"]).status == "created"
    assert app.count() == 1


def test_after_the_retention_a_replay_without_lookup_is_refused_and_created_publishes(
    live: Pipeline,
) -> None:
    app = live.sandbox.app("tas")
    app.faults.script([{"drop": "after_commit"}])
    job_id = dead_letter(live, {**TAS, "business_key": "T-3"})
    forget(live, "cases", "cases:27:T-3", job_id)
    drain(live.broker_url, live.results_queue)

    refused = startproc("dlq", "replay", job_id, env=live.env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "may have created the instance" in refused.stderr
    assert app.count() == 1  # no blind resend

    instance = str(app.instances[0]["id"])
    resolved = startproc("dlq", "resolve", job_id, "--created", instance, "--json", env=live.env)
    assert resolved.returncode == 0, resolved.stderr
    assert json.loads(resolved.stdout)["result_published"] is True
    status = json.loads(startproc("status", job_id, "--json", env=live.env).stdout)
    assert status["status"] == "created" and status["instance_id"] == instance
    published = drain(live.broker_url, live.results_queue)
    assert [(m["job_id"], m["status"]) for m in published] == [(job_id, "created")]


def test_delete_and_usage_errors(live: Pipeline) -> None:
    live.sandbox.app("tas").faults.script([{"drop": "before_commit"}])
    job_id = dead_letter(live, {**TAS, "business_key": "T-4"})

    for args in ([], ["--created", "1", "--not-created"]):
        usage = startproc("dlq", "resolve", job_id, *args, env=live.env)
        assert usage.returncode == 2 and "exactly one of" in usage.stderr
    unknown = startproc("dlq", "resolve", "no-such-job", "--not-created", env=live.env)
    assert unknown.returncode == 1 and "no dead letter 'no-such-job'" in unknown.stderr

    deleted = startproc("dlq", "delete", job_id, "--json", env=live.env)
    assert deleted.returncode == 0 and json.loads(deleted.stdout) == {"deleted": job_id}
    gone = startproc("dlq", "delete", job_id, env=live.env)
    assert gone.returncode == 1 and f"no dead letter '{job_id}'" in gone.stderr
    assert json.loads(startproc("dlq", "list", "--json", env=live.env).stdout) == []
