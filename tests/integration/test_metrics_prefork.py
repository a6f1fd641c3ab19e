"""A prefork worker's exporter counts the jobs its pool children ran, with nothing set by hand.

A real ``celery worker --pool prefork -c 2`` with ``STARTPROC_METRICS_PORT``
and no ``PROMETHEUS_MULTIPROC_DIR``: the jobs run in the two children, the
exporter in the main process. Before multiprocess mode was automatic its
job counters stayed at zero. The worker makes its own directory, and removes
it when it exits.

Waits are on results and on the scraped counters, each with a deadline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import worker
from tests.intake.helpers import free_port, wait_until
from tests.integration.conftest import Pipeline, running_pipeline
from tests.support.prometheus import value
from worker import metrics
from worker.local import demo
from worker.local.embedded import EmbeddedRedis
from worker.local.sandbox import SandboxServer

pytestmark = pytest.mark.integration

CREATED = 5
ORDERS = {"target": "orders", "engine": "camunda8"}
UNKNOWN = {"target": metrics.UNKNOWN, "engine": metrics.UNKNOWN}
DIR_LOGGED = re.compile(r"metrics\.multiprocess_dir.*?\bpath[=\"': ]+([^\s'\",}]+)")


@pytest.fixture
def prefork(
    redis_server: EmbeddedRedis,
    sandbox: SandboxServer,
    redis_url: str,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    """A clean Redis and demo sandboxes behind a 2-child prefork worker with the exporter on."""
    demo.configure_sandbox(sandbox)
    env = {"STARTPROC_METRICS_PORT": str(free_port()), "STARTPROC_LOG_FORMAT": "json"}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(metrics.MULTIPROC_ENV, raising=False)  # the worker must make its own
        with running_pipeline(
            "redis", redis_server, sandbox, tmp_path, env, pool="prefork", concurrency=2
        ) as running:
            yield running


def scrape(pipeline: Pipeline) -> str:
    url = f"http://127.0.0.1:{pipeline.env['STARTPROC_METRICS_PORT']}/metrics"
    try:
        return httpx.get(url, timeout=5).text
    except httpx.TransportError:
        return ""  # the exporter is not up yet


def multiproc_dir(pipeline: Pipeline) -> Path:
    """The directory the worker made, from its ``metrics.multiprocess_dir`` log line.

    Logged from ``worker_init``, before Celery's ``setup_logging`` switches
    to JSON: either ``path=/tmp/…`` or ``"path": "/tmp/…"``.
    """
    logs = "\n".join(p.read_text() for p in sorted(pipeline.log_dir.glob("worker-*.log")))
    found = DIR_LOGGED.search(logs)
    assert found, f"the prefork worker logged no metrics.multiprocess_dir:\n{logs[-3000:]}"
    return Path(found.group(1))


def test_prefork_exporter_counts_every_childs_jobs(prefork: Pipeline) -> None:
    jobs = [
        {"target": "orders", "process": "order-process", "business_key": f"PF-{n}"}
        for n in range(CREATED)
    ]
    jobs.append({"target": "ordrs", "process": "order-process"})  # invalid: failed, (unknown)
    ids = worker.enqueue_many(jobs)
    results = prefork.wait_all(ids)
    assert [r.status for r in results] == ["created"] * CREATED + ["failed"]

    page: list[str] = [""]

    def counted() -> bool:
        page[0] = scrape(prefork)
        return (
            value(page[0], "startproc_starts_total", **ORDERS, status="created") >= CREATED
            and value(page[0], "startproc_starts_total", **UNKNOWN, status="failed") >= 1
        )

    wait_until(counted, 60, f"the prefork exporter to count {CREATED} created and 1 failed")
    text = page[0]
    assert value(text, "startproc_starts_total", **ORDERS, status="created") == CREATED
    assert value(text, "startproc_starts_total", **UNKNOWN, status="failed") == 1
    assert value(text, "startproc_starts_total", **ORDERS, status="failed") == 0
    assert value(text, "startproc_start_latency_seconds_count", **ORDERS) == CREATED
    assert value(text, "startproc_redis_up") == 1

    # The counters are in the children's files of the worker's own directory ...
    folder = multiproc_dir(prefork)
    assert folder.name.startswith(metrics.MULTIPROC_PREFIX)
    assert list(folder.glob("counter_*.db")), sorted(p.name for p in folder.iterdir())
    # ... which goes when the worker's main process exits.
    for proc in list(prefork.stack.processes):
        prefork.stack.stop_process(proc)
    assert not folder.exists()
