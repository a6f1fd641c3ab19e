"""The backlog on a real worker's /metrics, and every metric the alerts and the dashboard read.

A real ``celery worker`` with its exporter (``STARTPROC_METRICS_PORT``) runs
the jobs against the sandbox. The sandbox holds start requests (its latency
knob, released at once when lowered) so that jobs wait in the queue and in
flight for as long as the test needs to see them, without a sleep.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import worker
from tests.intake.helpers import free_port, wait_until
from tests.integration.conftest import Pipeline, module_pipeline
from tests.support.prometheus import value
from tests.support.promql import metric_names

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "startproc.json"

pipeline = module_pipeline(
    "backlog-metrics", lambda _workdir: {"STARTPROC_METRICS_PORT": str(free_port())}
)


@pytest.fixture
def live(pipeline: Pipeline, sandbox: Any, redis_url: str) -> Pipeline:
    from worker.local import demo

    demo.configure_sandbox(sandbox)
    return pipeline


def scrape(pipeline: Pipeline) -> str:
    url = f"http://127.0.0.1:{pipeline.env['STARTPROC_METRICS_PORT']}/metrics"
    page: list[str] = []

    def answered() -> bool:
        try:
            page.append(httpx.get(url, timeout=5).text)
        except httpx.TransportError:
            return False
        return True

    wait_until(answered, 60, f"the worker exporter at {url}")
    return page[-1]


def scrape_until(pipeline: Pipeline, holds: Any, what: str, timeout: float = 60) -> str:
    pages: list[str] = []

    def seen() -> bool:
        pages.append(scrape(pipeline))
        return bool(holds(pages[-1]))

    wait_until(seen, timeout, what)
    return pages[-1]


def order(n: int) -> dict[str, Any]:
    return {"target": "orders", "process": "order-process", "business_key": f"B-{n}"}


def test_the_backlog_is_on_the_workers_metrics(live: Pipeline) -> None:
    """12 jobs, 4 worker threads, every start held by the engine: jobs wait in the queue
    and in flight; released, everything drains and the gauges go back to 0."""
    c8 = live.sandbox.app("camunda8")
    c8.faults.configure(latency_ms=8000)  # below the target's timeout: released earlier
    ids = [worker.enqueue(order(n)) for n in range(12)]
    q = {"queue": live.jobs_queue}

    def backlogged(text: str) -> bool:
        return (
            value(text, "startproc_jobs_queue_depth", **q) > 0
            and value(text, "startproc_jobs_oldest_age_seconds", **q) >= 1.0
            and value(text, "startproc_jobs_inflight") >= 1
            and value(text, "startproc_jobs_inflight_oldest_age_seconds") >= 1.0
        )

    page = scrape_until(live, backlogged, "a backlog with an age on /metrics")
    assert (
        value(page, "startproc_jobs_queue_depth", **q) + value(page, "startproc_jobs_inflight")
        <= 12
    )
    c8.faults.configure(latency_ms=0)  # the held starts go on at once
    assert {r.status for r in live.wait_all(ids, timeout=120)} == {"created"}

    def drained(text: str) -> bool:
        return (
            value(text, "startproc_jobs_queue_depth", **q) == 0
            and value(text, "startproc_jobs_oldest_age_seconds", **q) == 0
            and value(text, "startproc_jobs_inflight") == 0
            and value(text, "startproc_jobs_inflight_oldest_age_seconds") == 0
        )

    scrape_until(live, drained, "the backlog to drain")


def test_a_running_worker_beats(live: Pipeline) -> None:
    """Redis was flushed for this test: the next beat (every 15 s) brings the worker back."""
    page = scrape_until(
        live, lambda t: value(t, "startproc_workers_alive") >= 1, "a worker heartbeat"
    )
    age = value(page, "startproc_worker_heartbeat_age_seconds")
    assert 0 <= age <= 60 and not math.isinf(age)


# ---------------------------------------------------------------- alerts and dashboard


def served_names(text: str) -> set[str]:
    """Every sample name a scrape holds (counters as ``_total``, histograms' ``_bucket``…)."""
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found = []
        for panel in items:
            found.append(panel)
            found.extend(panels(panel.get("panels", [])))
        return found

    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in panels(data["panels"]) for t in p.get("targets", [])]


def test_every_metric_the_alerts_and_the_dashboard_read_is_served(live: Pipeline) -> None:
    """Counters have samples only once something happened: a created job, a retried
    start, an ambiguous one (reconciled), a dead letter, an invalid job."""
    c8 = live.sandbox.app("camunda8")
    c8.faults.script([{"status": 503}, {"drop": "after_commit"}])
    live.sandbox.app("blueworks").faults.script([{"drop": "after_commit"}])
    ids = [
        worker.enqueue(order(1)),
        worker.enqueue(order(2)),
        worker.enqueue({"target": "approvals", "process": "5f500e12a00ee", "business_key": "B-3"}),
    ]
    results = live.wait_all(ids, timeout=120)
    assert [r.status for r in results] == ["created", "created", "failed"], results[-1].error
    text = scrape_until(
        live,
        lambda t: (
            value(t, "startproc_workers_alive") >= 1
            and "startproc_ambiguous_total" in served_names(t)
        ),
        "the counters and a heartbeat",
    )
    served = served_names(text)
    exprs = [rule["expr"] for rule in alert_rules()] + dashboard_exprs()
    assert len(exprs) >= 20
    missing = {name for expr in exprs for name in metric_names(expr)} - served
    assert missing == set(), f"read by the alerts or the dashboard, not served: {missing}"
    assert value(text, "startproc_dlq_jobs", kind="ambiguous") == 1, results[-1].error
    # the check is not vacuous: a name the exporter does not serve is caught
    assert metric_names("rate(startproc_startz_total[5m])") - served == {"startproc_startz_total"}


def test_the_alert_rules_are_well_formed() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)) >= 7
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert metric_names(rule["expr"]), rule["alert"]
    wanted = {
        "startproc_jobs_oldest_age_seconds",  # backlog age
        "startproc_dlq_jobs",  # DLQ growth
        "startproc_starts_total",  # error ratio by target
        "startproc_worker_heartbeat_age_seconds",  # no worker heartbeat
    }
    assert wanted <= {name for rule in rules for name in metric_names(rule["expr"])}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (target) (rate(a_total{status="failed"}[5m])) / sum(rate(a_total[5m]))',
            {"a_total"},
        ),
        ("histogram_quantile(0.95, sum by (le) (rate(b_bucket[$__rate_interval])))", {"b_bucket"}),
        (
            "(sum(increase(c_total[15m])) or on () vector(0)) == 0 and on () d offset 5m",
            {"c_total", "d"},
        ),
        ("max(e) > bool 1 unless absent(f)", {"e", "f"}),
    ],
)
def test_the_promql_scanner_finds_the_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
