"""Metrics move when jobs run: the worker's exporter counts, the intake's /metrics gauges.

Jobs go in through the intake and are started by the real worker process;
its exporter (``STARTPROC_METRICS_PORT``, started by the ``worker_init``
hook) is scraped over HTTP. Worker counters live as long as the module's
worker, so assertions are on differences.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.prometheus import value

from .helpers import Pipeline, RunningServer, metrics_url, wait_until

pytestmark = pytest.mark.integration

ORDERS = {"target": "orders", "engine": "camunda8"}


def worker_metrics(pipeline: Pipeline) -> str:
    """The worker exporter's page, waiting (bounded) for the worker to have started it."""
    page: list[str] = []
    url = metrics_url(pipeline)

    def answered() -> bool:
        try:
            page.append(httpx.get(f"{url}/metrics", timeout=5).text)
        except httpx.TransportError:
            return False
        return True

    wait_until(answered, 60, f"the worker exporter at {url}")
    return page[-1]


def job(key: str, target: str = "orders", **extra: Any) -> dict[str, Any]:
    process = "5f500e12a00ee" if target == "approvals" else "order-process"
    return {"target": target, "process": process, "business_key": key, **extra}


def test_worker_counters_move_when_jobs_run(http: httpx.Client, live: Pipeline) -> None:
    before = worker_metrics(live)
    c8 = live.sandbox.app("camunda8")
    ids = http.post("/jobs", json=[job("M-1"), job("M-2")]).json()["job_ids"]
    assert {live.wait(j).status for j in ids} == {"created"}

    c8.faults.script([{"status": 503}])  # one transient error: retried in the same call
    retried = http.post("/jobs", json=job("M-3")).json()["job_ids"][0]
    assert live.wait(retried).status == "created"

    c8.faults.script([{"drop": "after_commit"}])  # created, but the answer is lost
    dropped = http.post("/jobs", json=job("M-4")).json()["job_ids"][0]
    assert live.wait(dropped).status == "created"  # found by reconciliation
    assert c8.count() == 4

    after = worker_metrics(live)

    def gained(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert gained("startproc_starts_total", **ORDERS, status="created") == 4
    assert gained("startproc_start_latency_seconds_count", **ORDERS) == 4
    assert gained("startproc_start_latency_seconds_sum", **ORDERS) > 0
    assert gained("startproc_retries_total", target="orders") == 1
    assert gained("startproc_ambiguous_total", target="orders") == 1


def test_intake_gauges_follow_redis(
    http: httpx.Client, intake: RunningServer, live: Pipeline
) -> None:
    with intake.client() as anonymous:
        before = anonymous.get("/metrics").text
        assert value(before, "startproc_dlq_size") == 0
        assert value(before, "startproc_ledger_size") == 0

        live.sandbox.app("blueworks").faults.script([{"drop": "after_commit"}])
        lost = http.post("/jobs", json=job("M-5", target="approvals")).json()["job_ids"][0]
        failed = live.wait(lost)
        assert failed.status == "failed" and failed.error is not None
        assert failed.error.kind == "ambiguous"  # Blueworks has no lookup: a person decides

        after = anonymous.get("/metrics").text
    assert value(after, "startproc_dlq_size") == 1
    assert value(after, "startproc_ledger_size") == 1
    assert value(after, "startproc_outbox_size") == 0
    assert value(after, "startproc_jobs_queue_depth", queue="startproc.jobs") == 0
    assert value(after, "startproc_redis_up") == 1
