"""Redis came back without its last writes (a host crash under an ``everysec`` AOF, a
failover to a replica that lagged): a job started in the lost writes comes back as a
plain queue message with no ledger entry and no result, and must not start twice.

The server is really killed and restarted from an older copy of its AOF
(`EmbeddedRedis.rewind`); the service is driven directly, as the task would.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from kombu import Connection

from tests.conftest import make_settings, sandbox_targets
from tests.test_service import LOOKUP_JOBS
from worker.keys import REDIS_EPOCH
from worker.local.embedded import EmbeddedRedis
from worker.local.sandbox import SandboxServer
from worker.models import iso_ms, utcnow
from worker.runtime import Runtime, build_runtime
from worker.service import Delivery, Done, RetryLater

NO_LOOKUP_JOBS = [
    {"target": "tas", "process": "27", "variables": {"amount": 1}},
    {"target": "blueworks", "process": "5f500e12a00ee", "business_key": "S-1"},
]
TWO_MINUTES_AGO = iso_ms(utcnow() - timedelta(minutes=2))
"""When the jobs below were enqueued: before the switch, also once it is aged a minute."""


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(appendonly=True, appendfsync="everysec") as embedded:
        yield embedded


@pytest.fixture
def rt(server: EmbeddedRedis, sandbox: SandboxServer) -> Runtime:
    cfg = make_settings(server.url, task_max_retries=2)
    targets = sandbox_targets(sandbox, tas={"retry_ambiguous": False})
    runtime = build_runtime(cfg, targets, Connection(server.url))
    runtime.service.sleep = lambda _s: None
    runtime.service.policy.__dict__["sleep"] = lambda _s: None  # frozen dataclass: tests only
    runtime.service.busy_wait = 0.0  # a busy key is a retry later at once
    return runtime


def handle(rt: Runtime, job: dict[str, Any], job_id: str = "job-1") -> Any:
    outcome = rt.service.handle(job, Delivery(job_id=job_id))
    return outcome.result if isinstance(outcome, Done) else outcome


def start_in_lost_writes(rt: Runtime, server: EmbeddedRedis, job: dict[str, Any]) -> Any:
    """Run ``job`` to its result, then lose every write it made with a restart."""
    warm_up = {"target": "processmaker4", "process": "1", "options": {"event": "node_1"}}
    assert handle(rt, warm_up, "warm-up").status == "created"  # the ledger meets this server
    snapshot = server.snapshot()
    first = handle(rt, job)
    server.rewind(snapshot)
    assert rt.results.get("job-1") is None, "the result must be lost with the writes"
    return first


def age_the_switch(rt: Runtime) -> None:
    """As if the switch had been noticed a minute ago: the wait after it is over."""
    client = rt.service.ledger.client
    since = int(client.hget(REDIS_EPOCH, "since") or 0)
    assert since > 0, "no claim has noticed the switch yet"
    client.hset(REDIS_EPOCH, "since", since - 60_000)


@pytest.mark.parametrize("job", LOOKUP_JOBS, ids=lambda j: f"{j['target']}-{j.get('business_key')}")
def test_a_job_started_in_lost_writes_is_found_not_started_again(
    rt: Runtime, server: EmbeddedRedis, sandbox: SandboxServer, job: dict[str, Any]
) -> None:
    app = sandbox.app(job["target"])
    job = {**job, "enqueued_at": TWO_MINUTES_AGO}
    first = start_in_lost_writes(rt, server, job)
    assert first.status == "created"
    started = app.count()
    waits = handle(rt, job)  # a holder from before the switch may still be sending
    assert isinstance(waits, RetryLater) and 0.5 <= waits.countdown <= 11.0
    assert app.count() == started
    age_the_switch(rt)
    again = handle(rt, job)
    assert again.status == "created" and again.instance_id == first.instance_id
    assert app.count() == started


@pytest.mark.parametrize("job", NO_LOOKUP_JOBS, ids=lambda j: j["target"])
def test_without_a_lookup_a_job_started_in_lost_writes_goes_to_a_person(
    rt: Runtime, server: EmbeddedRedis, sandbox: SandboxServer, job: dict[str, Any]
) -> None:
    app = sandbox.app(job["target"])
    job = {**job, "enqueued_at": TWO_MINUTES_AGO}
    assert start_in_lost_writes(rt, server, job).status == "created"
    assert isinstance(handle(rt, job), RetryLater)
    age_the_switch(rt)
    again = handle(rt, job)
    assert again.status == "failed" and again.error.kind == "ambiguous"
    assert rt.dead_letters.get("job-1")["reason"] == "ambiguous"
    assert app.count() == 1


def test_a_job_enqueued_after_the_switch_is_sent_without_a_lookup(
    rt: Runtime, server: EmbeddedRedis, sandbox: SandboxServer
) -> None:
    app = sandbox.app("camunda8")
    lost = {"target": "camunda8", "process": "order-process", "enqueued_at": TWO_MINUTES_AGO}
    start_in_lost_writes(rt, server, lost)
    assert isinstance(handle(rt, lost), RetryLater)  # it comes back and notices the switch
    age_the_switch(rt)
    assert handle(rt, lost).status == "created"
    lookups = app.stats()["lookup_requests"]
    assert lookups > 0
    job = {"target": "camunda8", "process": "order-process", "business_key": "after"}
    result = handle(rt, {**job, "enqueued_at": iso_ms(utcnow())}, "after")  # a minute after
    assert result.status == "created" and app.stats()["lookup_requests"] == lookups
