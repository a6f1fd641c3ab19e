"""What every benchmark shares: the stack under test, the counters, the table.

`Bench` owns one embedded Redis, one zero-latency Camunda 8 sandbox in its own
process, a targets file and the ``celery worker`` processes started on them.
Benchmarks measure a `Sample` (wall time, worker CPU from ``/proc``, Redis
commands from ``INFO commandstats``) and report `Row`\\s.

Waiting is never a bare sleep: completion is a list that the worker pushes to
(the results queue, or the no-op task's done list), popped with ``BLPOP``
under a deadline.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from benchmarks import noop_app
from worker.local.embedded import EmbeddedRedis
from worker.local.stack import LocalStack

REPO = Path(__file__).resolve().parents[1]
TARGET = "orders"
PROCESS = "order-process"
RESULTS_QUEUE = "startproc.results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 90.0  # a worker's start-up plus its warm-up jobs, on a loaded machine

Proc = subprocess.Popen[bytes]


# ------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Row:
    """One line of the results table; ``passed`` None means "reported, no goal"."""

    bench: str
    metric: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    goal: str = ""
    passed: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: ""}[self.passed]


@dataclass
class Report:
    """What one benchmark hands back: its table rows and Markdown details for RESULTS.md."""

    rows: list[Row]
    details: list[str] = field(default_factory=list)


def fmt(value: float | None) -> str:
    """Three significant digits, thousands separated: 0.123, 12.3, 123, 1,234."""
    if value is None:
        return "-"
    if abs(value) >= 99.95:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(rows: list[Row]) -> str:
    """A Markdown table (also readable as plain text)."""
    head = ["bench", "metric", "value", "baseline", "ratio", "goal", "verdict", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        baseline = f"{fmt(r.baseline)} ({r.baseline_label})" if r.baseline else ""
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        value = f"{fmt(r.value)} {r.unit}".strip()
        cells = [r.bench, r.metric, value, baseline, ratio, r.goal, r.verdict, r.note]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------ what is counted


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, user ticks, system ticks), reaped children's ticks included."""
    procs: dict[int, tuple[int, int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # After "pid (comm) ": [0] state, [1] ppid, [11] utime, [12] stime, [13] cutime,
        # [14] cstime (proc(5) fields 3, 4, 14-17).
        fields = raw[raw.rindex(")") + 2 :].split()
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        procs[int(entry.name)] = (int(fields[1]), utime + cutime, stime + cstime)
    return procs


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and all its descendants, from ``/proc``."""
    procs = _proc_table()
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (ppid, *_) in procs.items() if ppid == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    mine = [procs[p] for p in tree if p in procs]
    return sum(p[1] for p in mine) / CLK_TCK, sum(p[2] for p in mine) / CLK_TCK


def workers_cpu(pids: Sequence[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of several process trees together."""
    times = [cpu_times(pid) for pid in pids]
    return sum(t[0] for t in times), sum(t[1] for t in times)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from ``/proc/stat``."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user .. steal; guest time is already inside user
    return total - idle, total


def redis_calls(client: redis.Redis) -> Counter[str]:
    """Calls per command since the server started (commands run by Lua scripts included)."""
    info: dict[str, Any] = client.info("commandstats")
    calls = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()})
    calls.pop("info", None)  # our own snapshots
    return calls


@dataclass(frozen=True)
class Sample:
    """One measured run of ``jobs`` jobs."""

    jobs: int
    seconds: float
    worker_user: float
    worker_sys: float
    sandbox_cpu: float
    calls: Counter[str]
    machine_busy: float = 0.0
    """Share of all the machine's CPU time that was busy (any process), 0..1."""

    @property
    def worker_cpu(self) -> float:
        return self.worker_user + self.worker_sys

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def commands(self) -> float:
        return sum(self.calls.values()) / self.jobs


def machine_busy(samples: Sequence[Sample]) -> float:
    """Time-weighted share of the whole machine's CPU that was busy during ``samples``."""
    return sum(s.machine_busy * s.seconds for s in samples) / sum(s.seconds for s in samples)


def collect(
    client: redis.Redis, key: str, count: int, timeout: float, counted: Counter[str]
) -> list[bytes]:
    """Pop ``count`` items off the list ``key``, blocking, within ``timeout`` seconds.

    Our own commands are tallied in ``counted`` so they can be left out of a sample.
    """
    deadline = time.monotonic() + timeout
    items: list[bytes] = []
    while len(items) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{len(items)} of {count} items on {key!r} after {timeout:.0f}s")
        counted["blpop"] += 1
        popped: Any = client.blpop([key], timeout=min(remaining, 5.0))
        if popped is None:
            continue
        items.append(popped[1])
        if len(items) < count:
            counted["lpop"] += 1
            items.extend(client.lpop(key, count - len(items)) or [])  # type: ignore[arg-type]
    return items


# ----------------------------------------------------------------- processes


def _child_setup() -> None:
    """Own process group (stopped as a group) and die with the benchmark."""
    os.setpgrp()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class SandboxProcess:
    """``startproc sandbox camunda8`` in its own process, so its CPU is not the worker's."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        log = open(log_dir / "sandbox.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc: Proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "sandbox", "camunda8", "--port", "0", "--json"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            preexec_fn=_child_setup,
        )
        log.close()
        self.session = requests.Session()
        info = json.loads(self._first_line(START_TIMEOUT))
        self.url: str = info["url"]
        self.base_url: str = info["base_urls"]["camunda8"]

    def _first_line(self, timeout: float) -> bytes:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.proc.kill()
            raise RuntimeError(f"sandbox did not start within {timeout:.0f}s")
        return line

    @property
    def pid(self) -> int:
        return self.proc.pid

    def configure(self, **knobs: Any) -> None:
        """Standing fault knobs, e.g. ``latency_ms=200`` (omitted knobs go back to off)."""
        self.session.post(f"{self.url}/_sandbox/faults", json=knobs, timeout=10).raise_for_status()

    def stop(self) -> None:
        self.session.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def targets_toml(base_url: str) -> str:
    return f'[targets.{TARGET}]\nengine = "camunda8"\nbase_url = "{base_url}"\n'


def make_jobs(count: int, prefix: str | None = None) -> list[dict[str, Any]]:
    """Distinct C8 start jobs (a fresh business key each, so none is a duplicate)."""
    prefix = prefix or uuid.uuid4().hex[:8]
    return [
        {
            "target": TARGET,
            "process": PROCESS,
            "variables": {"orderId": f"{prefix}-{i}", "amount": 12.5},
            "business_key": f"{prefix}-{i}",
        }
        for i in range(count)
    ]


@dataclass
class Worker:
    """A running ``celery worker``: what it consumes and where it reports."""

    proc: Proc
    kind: str  # "pipeline" | "noop"
    done_key: str

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Bench:
    """The stack under test. Use `Bench.open()`; it sets the environment of this process too."""

    workdir: Path
    redis_server: EmbeddedRedis
    sandbox: SandboxProcess
    stack: LocalStack
    client: redis.Redis

    @classmethod
    @contextlib.contextmanager
    def open(cls, log_level: str = "INFO") -> Iterator[Bench]:
        from worker.config import settings

        workdir = Path(tempfile.mkdtemp(prefix="startproc-bench-"))
        (workdir / "logs").mkdir()
        saved = dict(os.environ)
        redis_server = EmbeddedRedis().start()
        base_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        sandbox: SandboxProcess | None = None
        stack: LocalStack | None = None
        ok = False
        try:
            sandbox = SandboxProcess(workdir / "logs", base_env)
            targets = workdir / "targets.toml"
            targets.write_text(targets_toml(sandbox.base_url), encoding="utf-8")
            env = {
                "STARTPROC_BROKER_URL": redis_server.url,
                "STARTPROC_REDIS_URL": redis_server.url,
                "STARTPROC_TARGETS": str(targets),
                "STARTPROC_RESULTS_QUEUE": RESULTS_QUEUE,
                "STARTPROC_LOG_LEVEL": log_level,
                "PYTHONPATH": str(REPO),
            }
            os.environ.update(env)
            settings.cache_clear()
            stack = LocalStack(broker_url=redis_server.url, env=env, log_dir=workdir / "logs")
            client = redis.Redis.from_url(redis_server.url)
            yield cls(workdir, redis_server, sandbox, stack, client)
            ok = True
        finally:
            if stack is not None:
                stack.stop()
            if sandbox is not None:
                sandbox.stop()
            redis_server.close()
            os.environ.clear()
            os.environ.update(saved)
            settings.cache_clear()
            if ok:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                print(f"benchmark failed; logs kept in {workdir / 'logs'}", file=sys.stderr)

    # ---- workers

    def start_worker(self, kind: str, pool: str = "threads", concurrency: int = 16) -> Worker:
        """Start a pipeline or no-op worker and return once it has answered warm-up jobs."""
        if kind == "pipeline":
            proc = self.stack.start_worker(concurrency=concurrency, pool=pool)
            worker = Worker(proc, kind, RESULTS_QUEUE)
        elif kind == "noop":
            worker = Worker(self._start_noop(pool, concurrency), kind, noop_app.DONE_LIST)
        else:
            raise ValueError(f"unknown worker kind {kind!r}")
        self.run(worker, make_jobs(min(concurrency, 32)), timeout=START_TIMEOUT)
        return worker

    def _start_noop(self, pool: str, concurrency: int) -> Proc:
        # The same command line as LocalStack.start_worker, with the no-op app.
        args = [
            *(sys.executable, "-m", "celery", "-A", "benchmarks.noop_app", "worker"),
            *("-Q", noop_app.QUEUE, "--pool", pool, "--concurrency", str(concurrency)),
            *("--hostname", f"noop{len(self.stack.processes)}@%h"),
            *("--without-gossip", "--without-mingle", "--loglevel", "INFO"),
        ]
        env = {
            **self.stack.child_env,
            "STARTPROC_WORKER_POOL": pool,
            "STARTPROC_WORKER_CONCURRENCY": str(concurrency),
        }
        log = open(self.workdir / "logs" / "noop.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_setup,
        )
        log.close()
        self.stack.processes.append(proc)  # stopped with the stack
        return proc

    def stop_worker(self, worker: Worker) -> None:
        self.stack.stop_process(worker.proc)

    # ---- one measured run

    def send(self, worker: Worker, jobs: list[dict[str, Any]]) -> None:
        """Validate and enqueue ``jobs`` for ``worker`` exactly as a producer would."""
        from worker import producer

        if worker.kind == "pipeline":
            producer.enqueue_many(jobs)
        else:
            noop_app.publish([producer.prepare(job) for job in jobs], self.redis_server.url)

    def run(
        self,
        worker: Worker,
        jobs: list[dict[str, Any]],
        timeout: float = 300.0,
        during: Callable[[], None] | None = None,
        also: Sequence[Worker] = (),
    ) -> tuple[Sample, list[bytes]]:
        """Enqueue ``jobs`` and wait for all their completions; ``during`` runs before sending.

        ``also``: more workers on the same queue, whose CPU counts in the sample too.
        """
        ours: Counter[str] = Counter()
        if worker.proc.poll() is not None:
            raise RuntimeError(f"{worker.kind} worker exited; logs in {self.workdir / 'logs'}")
        self.client.delete(worker.done_key)  # nothing left over from an earlier run
        calls0 = redis_calls(self.client)
        pids = [worker.pid, *(w.pid for w in also)]
        cpu0, sandbox0 = workers_cpu(pids), cpu_times(self.sandbox.pid)
        machine0 = machine_ticks()
        if during is not None:
            during()
        start = time.perf_counter()
        self.send(worker, jobs)
        try:
            items = collect(self.client, worker.done_key, len(jobs), timeout, ours)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; logs in {self.workdir / 'logs'}") from None
        seconds = time.perf_counter() - start
        cpu1, sandbox1 = workers_cpu(pids), cpu_times(self.sandbox.pid)
        machine1 = machine_ticks()
        busy = (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1])
        calls = redis_calls(self.client) - calls0 - ours
        user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        sandbox = sum(sandbox1) - sum(sandbox0)
        sample = Sample(len(jobs), seconds, user, system, sandbox, calls, busy)
        return sample, items


def result_bodies(items: list[bytes]) -> Iterator[dict[str, Any]]:
    """The results in kombu envelopes popped off the results queue."""
    import base64

    for item in items:
        yield json.loads(base64.b64decode(json.loads(item)["body"]))


def decode_results(items: list[bytes]) -> Counter[str]:
    """Statuses of kombu envelopes popped off the results queue."""
    return Counter(body["status"] for body in result_bodies(items))


def finish_times(items: list[bytes]) -> list[float]:
    """When each result of kombu envelopes popped off the results queue was finished (Unix
    time, sorted): the worker's own clock, so the bench's polling adds nothing."""
    from datetime import datetime

    return sorted(
        datetime.fromisoformat(body["finished_at"]).timestamp() for body in result_bodies(items)
    )


def steady_rate(times: list[float], concurrency: int) -> float | None:
    """Completions per second between the first and the last ``concurrency`` of them.

    A round starts with every thread idle (the enqueue and the first fetches
    take a while) and ends with threads idling as the last wave drains: with
    a slow engine each costs up to one latency, a tenth of a 640-job round at
    64 threads. What is left is the rate the worker holds while it is full.
    None when a round is too short to have a middle.
    """
    waves = (len(times) - 2 * concurrency - 1) // concurrency
    if waves < 1:
        return None
    # whole waves apart: completions that come in bursts of ``concurrency`` are not overcounted
    first, last = times[concurrency], times[concurrency + waves * concurrency]
    return waves * concurrency / (last - first) if last > first else None


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    import platform

    import celery
    import kombu

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": models[0] if models else platform.machine(),
        "load average at start": load,
        "python": platform.python_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis-py": redis.__version__,
    }
