"""Fault-injection harness: real worker processes, a real Redis, the sandboxes.

Each scenario starts its own worker(s) with the faults it needs (failpoints
via environment, sandbox fault knobs, SIGKILL, Redis restarts), runs jobs,
then checks from the sandbox's own instance store and the results queue:
0 jobs lost, 0 duplicate instances, exactly one result per job. A summary
table is printed at the end of the run.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.service import drain
from worker.config import environment, settings
from worker.local import demo
from worker.local.embedded import EmbeddedRedis
from worker.local.sandbox import SandboxServer
from worker.local.stack import LocalStack
from worker.models import Result
from worker.runtime import result_store

SUMMARY: list[dict[str, Any]] = []


@dataclass
class Verdict:
    scenario: str
    jobs: int
    created: int
    duplicates: int
    failed: int
    lost: int
    duplicate_instances: int
    results_on_queue: int
    extra_results: int
    dlq: int
    doubled: dict[str, list[str]] = field(default_factory=dict)
    """Carried key -> ids of the instances it got, for every key with more than one."""
    failures: dict[str, str] = field(default_factory=dict)
    """Job id -> error kind and message, for every failed job."""

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("doubled", "failures")}


@dataclass
class FaultStack:
    redis_url: str
    sandbox: SandboxServer
    env: dict[str, str]
    stack: LocalStack
    workdir: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self, pool: str = "prefork", concurrency: int = 2) -> subprocess.Popen[bytes]:
        proc = self.stack.start_worker(concurrency=concurrency, pool=pool)
        self.workers.append(proc)
        return proc

    def results(self, job_ids: list[str], timeout: float = 90.0) -> dict[str, Result | None]:
        store = result_store(settings())
        deadline = time.monotonic() + timeout
        found: dict[str, Result | None] = {}
        for job_id in job_ids:
            found[job_id] = store.wait(job_id, max(deadline - time.monotonic(), 0.05))
        return found

    def logs(self) -> str:
        return "\n".join(p.read_text()[-4000:] for p in (self.workdir / "logs").glob("*.log"))

    def verify(
        self,
        scenario: str,
        job_ids: list[str],
        engines: tuple[str, ...] = ("camunda8",),
        timeout: float = 90.0,
    ) -> Verdict:
        found = self.results(job_ids, timeout)
        statuses = Counter(r.status for r in found.values() if r is not None)
        published = Counter(m["job_id"] for m in drain(self.redis_url))
        keys: Counter[str] = Counter()
        instances: dict[str, list[str]] = {}
        for name in engines:
            for instance in self.sandbox.app(name).instances:
                keys[_carried_key(instance)] += 1
                number = (instance.get("variables") or {}).get("n")
                instances.setdefault(_carried_key(instance), []).append(
                    f"{name}:{instance['id']}@{instance.get('created_at', '?')} n={number}"
                )
        dlq = redis.Redis.from_url(self.redis_url).hlen("startproc:dlq")
        verdict = Verdict(
            scenario=scenario,
            jobs=len(job_ids),
            created=statuses["created"],
            duplicates=statuses["duplicate"],
            failed=statuses["failed"],
            lost=sum(1 for r in found.values() if r is None),
            duplicate_instances=sum(n - 1 for n in keys.values() if n > 1),
            results_on_queue=sum(published[j] for j in job_ids),
            extra_results=sum(n - 1 for n in published.values() if n > 1),
            dlq=int(dlq),  # type: ignore[arg-type]
            doubled={k: v for k, v in instances.items() if len(v) > 1},
            failures={
                job_id: f"{r.error.kind}: {r.error.message}"
                for job_id, r in found.items()
                if r is not None and r.status == "failed" and r.error is not None
            },
        )
        SUMMARY.append(verdict.row())
        return verdict


def _carried_key(instance: dict[str, Any]) -> str:
    """The idempotency key an instance carries: a C8 tag, a variable, or the business key."""
    for tag in instance.get("tags") or []:
        if tag.startswith("startproc:"):
            return str(tag)
    variables = instance.get("variables") or {}
    if "_startproc_key" in variables:
        return str(variables["_startproc_key"])
    return str(instance.get("business_key") or instance["id"])


def assert_clean(verdict: Verdict, logs: str = "", workdir: Path | None = None) -> None:
    assert verdict.lost == 0, f"lost jobs: {verdict}\n{logs}"
    assert verdict.duplicate_instances == 0, f"{verdict}\n{_trace(verdict, workdir)}"
    assert verdict.results_on_queue == verdict.jobs, verdict
    assert verdict.extra_results == 0, verdict


def _trace(verdict: Verdict, workdir: Path | None) -> str:
    """Every worker log line that names a doubled key: what each holder did, in order."""
    if workdir is None:
        return ""
    lines = [f"doubled: {verdict.doubled}"]
    terms = {key.removeprefix("startproc:") for key in verdict.doubled}
    for found in verdict.doubled.values():  # the mixed run's keys are mix-<n>
        terms.update(f'"mix-{item.rsplit("n=", 1)[1]}"' for item in found if "n=" in item)
    for log in sorted((workdir / "logs").glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if any(term in line for term in terms):
                lines.append(f"{log.name}: {line[:400]}")
    return "\n".join(lines[:200])


BASE_ENV = {
    "STARTPROC_HTTP_BACKOFF_INITIAL": "0.01",
    "STARTPROC_HTTP_BACKOFF_MAX": "0.5",
    "STARTPROC_TASK_RETRY_BACKOFF_MAX": "1",
    "STARTPROC_TASK_MAX_RETRIES": "30",
    "STARTPROC_LEASE_SECONDS": "5",
    "STARTPROC_TASK_TIME_LIMIT": "15",
    "STARTPROC_VISIBILITY_TIMEOUT": "20",
    "STARTPROC_MAX_DELIVERIES": "3",
    "STARTPROC_RECONCILE_WINDOW": "3",
    "STARTPROC_SWEEP_INTERVAL": "2",
    "STARTPROC_REDRIVE_AFTER": "30",
}


@pytest.fixture
def faults(
    sandbox: SandboxServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[FaultStack]:
    marker = request.node.get_closest_marker("stack_env")
    extra = dict(marker.kwargs) if marker else {}
    appendonly = bool(extra.pop("appendonly", False))
    appendfsync = str(extra.pop("appendfsync", "always"))  # everysec: the rewind scenarios
    # production_timings: every setting and target timeout at its default (BASE_ENV off)
    production = bool(extra.pop("production_timings", False))
    with EmbeddedRedis(appendonly=appendonly, appendfsync=appendfsync) as server:
        targets = demo.write_targets(sandbox, tmp_path / "targets.toml")
        if not production:
            # Short HTTP timeouts so the short lease above still outlasts one attempt.
            short = "\ntimeout = 2\nconnect_timeout = 1\nengine = "
            targets.write_text(targets.read_text().replace("\nengine = ", short))
        demo.configure_sandbox(sandbox)
        (tmp_path / "markers").mkdir()
        env = {
            **({} if production else BASE_ENV),
            "STARTPROC_BROKER_URL": server.url,
            "STARTPROC_REDIS_URL": server.url,
            "STARTPROC_TARGETS": str(targets),
            "STARTPROC_FAILPOINT_DIR": str(tmp_path / "markers"),
            demo.SECRET_VAR: demo.DEMO_SECRET,
            **extra,
        }
        # failpoints only in the workers (the stack passes env to them), never in this process
        here = {k: v for k, v in env.items() if k != "STARTPROC_FAILPOINTS"}
        with environment(here):
            stack = LocalStack(broker_url=server.url, env=env, log_dir=tmp_path / "logs")
            fault_stack = FaultStack(server.url, sandbox, env, stack, tmp_path)
            fault_stack.embedded = server  # type: ignore[attr-defined]
            try:
                yield fault_stack
            finally:
                stack.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stack_env(**env): extra environment for the fault stack")


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not SUMMARY:
        return
    columns = list(SUMMARY[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in SUMMARY)) for c in columns}
    terminalreporter.section("fault-injection summary")
    terminalreporter.write_line(" | ".join(c.ljust(widths[c]) for c in columns))
    terminalreporter.write_line("-+-".join("-" * widths[c] for c in columns))
    for row in SUMMARY:
        terminalreporter.write_line(" | ".join(str(row[c]).ljust(widths[c]) for c in columns))
