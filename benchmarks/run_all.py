"""Run every benchmark on one stack, print one table, write ``benchmarks/RESULTS.md``.

    python -m benchmarks.run_all                  # what `make bench` runs (~6 minutes)
    python -m benchmarks.run_all --profile p1.txt # plus a py-spy profile of the P1 worker
    python -m benchmarks.run_all --quick --output /tmp/r.md   # tiny sizes: proves it works
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import instructions, latency, latency_bound, pipeline
from benchmarks.common import REPO, Bench, Report, Row, machine, table

RESULTS = Path(__file__).with_name("RESULTS.md")
ALL = ("p1", "p2", "p3", "p4")
P3_MODULE = "benchmarks.batch"
P3_MARK = "P3-REPORT-JSON "
P3_QUICK_ARGV = ("--rows", "2000")
P3_TIMEOUT = 900.0


@dataclass(frozen=True)
class Sizes:
    p1_jobs: int = 2000
    p1_rounds: int = 3
    p2_jobs: int = 640
    p2_rounds: int = 3
    p4_samples: int = 200
    p4_warmup: int = 20
    handle_calls: int = 300


FULL = Sizes()
QUICK = Sizes(
    p1_jobs=30, p1_rounds=1, p2_jobs=64, p2_rounds=1, p4_samples=5, p4_warmup=2, handle_calls=10
)


def p3_report(quick: bool, module: str = P3_MODULE) -> Report:
    """P3 (batch enqueue) through its hook, in a child process.

    ``benchmarks/batch.py`` is owned elsewhere. It runs in a process of its
    own because it measures its peak RSS (``ru_maxrss`` covers a process's
    whole life) and sets up its own Redis and environment. The child prints
    the report as one JSON line after `P3_MARK`; its other output is shown
    only when it fails.
    """
    args = [sys.executable, "-m", "benchmarks.run_all", "--p3-child", module]
    child = subprocess.run(
        [*args, *(["--quick"] if quick else [])],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=P3_TIMEOUT,
    )
    marked = [line for line in child.stdout.splitlines() if line.startswith(P3_MARK)]
    if child.returncode == 0 and marked:
        data = json.loads(marked[-1].removeprefix(P3_MARK))
        return Report([Row(**row) for row in data["rows"]], data["details"])
    print(child.stdout, child.stderr, sep="\n", file=sys.stderr)
    why = (child.stderr.strip().splitlines() or ["no output"])[-1]
    note = f"{module} failed (exit {child.returncode}): {why}"
    return Report([Row("P3", "batch enqueue", None, "", note=note[:300])])


def p3_in_process(quick: bool, module: str) -> Report:
    """The hook's contract: ``main(argv)`` or ``run()`` returning a `Report`, rows or a row.

    ``--quick`` becomes ``main(["--rows", "2000"])`` (or ``quick=True`` for a
    function that takes it); otherwise ``main([])``: the script's own defaults.
    """
    try:
        batch = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        missing = f"hook: {module.replace('.', '/')}.py not written yet"
        return Report([Row("P3", "batch enqueue", None, "", note=missing)])
    entry = getattr(batch, "main", None) or getattr(batch, "run", None)
    if entry is None:
        return Report([Row("P3", "batch enqueue", None, "", note=f"hook: {module} has no main()")])
    params = inspect.signature(entry).parameters
    kwargs: dict[str, Any] = {}
    if "quick" in params:
        kwargs["quick"] = quick
    if "argv" in params:
        kwargs["argv"] = list(P3_QUICK_ARGV) if quick and "quick" not in params else []
    return as_report(entry(**kwargs))


def as_report(value: Any) -> Report:
    if isinstance(value, Report):
        return value
    if isinstance(value, Row):
        return Report([value])
    if isinstance(value, list) and all(isinstance(v, Row) for v in value):
        return Report(value)
    return Report([Row("P3", "batch enqueue", None, "", note=f"returned {value!r:.80}")])


def run(only: tuple[str, ...], sizes: Sizes, profile: Path | None) -> tuple[list[Report], str]:
    """The reports in table order (P1..P4), and the redis-server version."""
    reports: dict[str, Report] = {}
    with Bench.open() as bench:
        server = str(bench.client.info("server")["redis_version"])
        if "p1" in only:
            p1 = pipeline.run(bench, sizes.p1_jobs, sizes.p1_rounds, profile=profile)
            counted = instructions.run(bench, sizes.handle_calls)
            reports["p1"] = Report([*p1.rows, *counted.rows], p1.details)
        if "p2" in only:
            one = latency_bound.run(bench, sizes.p2_jobs, sizes.p2_rounds)
            two = latency_bound.run(bench, sizes.p2_jobs, sizes.p2_rounds, processes=2)
            reports["p2"] = Report([*one.rows, *two.rows], [*one.details, *two.details])
        if "p4" in only:
            reports["p4"] = latency.run(bench, sizes.p4_samples, sizes.p4_warmup)
    if "p3" in only:
        reports["p3"] = p3_report(quick=sizes is QUICK)
    return [reports[name] for name in ALL if name in reports], server


def write_results(
    path: Path, info: dict[str, str], reports: list[Report], seconds: float, command: str
) -> None:
    rows = [row for report in reports for row in report.rows]
    details = [detail for report in reports for detail in report.details]
    machine_lines = [f"- {key}: {value}" for key, value in info.items()]
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join(
        [
            "# Benchmark results",
            "",
            f"`{command}` on {when}, {seconds:.0f} s. Rewritten by every run.",
            "",
            "## Machine",
            "",
            *machine_lines,
            "",
            "## Results",
            "",
            table(rows),
            "",
            "Verdicts are against the goals of issues 9 and 19. Throughput moves with whatever",
            "the machine runs; ratios are taken in the same run, on the same Redis and the",
            "same pool, and **CPU per start** and **Redis commands per start** are the",
            "numbers to compare between runs.",
            "",
            *[part for detail in details for part in (detail, "")],
            METHOD,
        ]
    )
    path.write_text(text, encoding="utf-8")


METHOD = """\
## Method

One embedded Redis (broker, ledger and results), one Camunda 8 sandbox in its
own process (`startproc sandbox camunda8`, no auth), real `celery worker`
processes. Jobs are distinct C8 starts (`orders` / `order-process`, a fresh
business key each), so every one is claimed, sent and created.

- **P1 pipeline overhead** (`benchmarks/pipeline.py`): N jobs through
  `worker.enqueue_many` → `celery -A worker worker` → results queue, against N
  no-op tasks (`benchmarks/noop_app.py`: same broker settings, same pool and
  concurrency, same prepared job as the message, one `LPUSH` as its "result")
  → `celery -A benchmarks.noop_app worker`. Rounds alternate; throughput is the
  median of jobs / (first enqueue → last result popped off the list).
- **P2 latency-bound throughput** (`benchmarks/latency_bound.py`): the sandbox
  sleeps 200 ms before each start; 64 threads. Ideal = 64 / 0.2 s = 320 jobs/s.
  The note gives the cores the worker burnt (CPU time / wall time): near 1, one
  process is saturated by its own CPU, not waiting on the engine.
  **Threads, not gevent**: a thread blocked in `recv` for 200 ms releases the
  GIL and costs nothing, so 64 OS threads are plenty for 64 concurrent calls;
  what limits a worker process is its CPU per start, which gevent does not
  lower (same Python code, plus the hub and monkey-patched sockets). Measured
  on 2026-11-26 (`pip install gevent`, `python -m benchmarks.pipeline --pool
  gevent`), gevent made it worse: 3.4 ms of CPU per no-op task and 7.4 ms per
  start, against 2.1 and 6.4 ms with threads in the same session (Celery runs
  its slower synchronous consumer loop under gevent). Threads
  are the product default (`STARTPROC_WORKER_POOL`) and need no monkey-patching
  of redis-py, requests and kombu; gevent is not a dependency. gevent pays off
  with hundreds or thousands of concurrent calls per process, past the
  per-target connection limit (64).
  **P2 x2** runs the same 64 threads as two worker processes of 32 (how one
  deploys on two cores): one process is bound by its CPU per start, so the
  way past it is more processes, and this row shows how far that goes on a
  machine whose two cores also run the sandbox, Redis and the producer.
- **P3 batch enqueue** (`benchmarks/batch.py`, hooked into `run_all.py`).
- **P4 latency** (`benchmarks/latency.py`): one job at a time on an otherwise
  idle stack, `worker.enqueue(job)` then `worker.wait(job_id)`, wall clock.
- **CPU per start**: utime + stime from `/proc/<pid>/stat` of the worker
  process and its descendants (and reaped children), over the measured window,
  divided by jobs. **Redis commands per start**: `INFO commandstats` before and
  after, minus the benchmark's own `BLPOP`/`LPOP` of the completions; commands
  run inside Lua scripts are counted by Redis too.

## Reproduce

```sh
make bench                                      # all of it; writes this file
make bench BENCH_ARGS="--profile /tmp/p1.txt"   # plus py-spy on the P1 worker (pip install py-spy)
python -m benchmarks.pipeline --n 2000 --rounds 3 --concurrency 16
python -m benchmarks.latency_bound --n 640 --concurrency 64 --latency-ms 200 [--processes 2]
python -m benchmarks.latency --samples 200
```
"""


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--only", default=",".join(ALL), help="e.g. p1,p4 (default: all)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the Markdown file")
    parser.add_argument("--profile", type=Path, help="py-spy raw stacks of the P1 worker here")
    parser.add_argument("--p3-child", metavar="MODULE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.p3_child:
        report = p3_in_process(args.quick, args.p3_child)
        print(
            P3_MARK
            + json.dumps({"rows": [asdict(r) for r in report.rows], "details": report.details})
        )
        return report.rows
    only = tuple(name.strip().lower() for name in args.only.split(","))
    unknown = set(only) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; choose from {ALL}")
    info = machine()
    started = time.monotonic()
    reports, server = run(only, QUICK if args.quick else FULL, args.profile)
    info["redis-server"] = server
    info["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = [row for report in reports for row in report.rows]
    print(table(rows))
    command = " ".join(["python -m benchmarks.run_all", *(sys.argv[1:] if argv is None else argv)])
    write_results(args.output, info, reports, time.monotonic() - started, command)
    print(f"\nwritten to {args.output}")
    return rows


if __name__ == "__main__":
    main()
