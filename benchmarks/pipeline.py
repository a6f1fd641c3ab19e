"""P1 pipeline overhead: N jobs through the whole pipeline vs N no-op Celery tasks.

Both sides run on the same embedded Redis with the same pool and
concurrency, in alternating rounds so that a noisy neighbour hurts both:

* pipeline: ``worker.enqueue_many`` → ``celery -A worker worker`` (validation,
  ledger, C8 adapter, HTTP to a zero-latency sandbox, result recorded and
  published) → the results queue;
* baseline: the same prepared jobs → ``celery -A benchmarks.noop_app worker``
  → one ``LPUSH`` per task.

Throughput is jobs / seconds from the first enqueue to the last result. CPU
per start is the worker process's (``/proc``) and Redis commands per start
come from ``INFO commandstats``; those two are the numbers to trust on a
noisy machine. ``--profile`` adds one unmeasured round under py-spy.

    python -m benchmarks.pipeline --n 2000 --rounds 3 [--profile p1.txt]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from benchmarks.common import (
    Bench,
    Report,
    Row,
    Sample,
    Worker,
    decode_results,
    machine_busy,
    make_jobs,
    median,
    table,
)

GOAL_RATIO = 0.5


def run(
    bench: Bench,
    n: int = 2000,
    rounds: int = 3,
    pool: str = "threads",
    concurrency: int = 16,
    profile: Path | None = None,
) -> Report:
    pipeline = bench.start_worker("pipeline", pool, concurrency)
    noop = bench.start_worker("noop", pool, concurrency)
    ours: list[Sample] = []
    base: list[Sample] = []
    details: list[str] = []
    try:
        for _ in range(rounds):
            base.append(bench.run(noop, make_jobs(n))[0])
            sample, items = bench.run(pipeline, make_jobs(n))
            statuses = decode_results(items)
            if statuses != Counter(created=n):
                raise AssertionError(f"P1: expected {n} created results, got {dict(statuses)}")
            ours.append(sample)
        if profile is not None:
            details.append(profile_round(bench, pipeline, n, profile))
    finally:
        bench.stop_worker(noop)
        bench.stop_worker(pipeline)
    details.insert(0, command_breakdown(ours, base))
    return Report(rows(ours, base, pool, concurrency), details)


def rows(ours: list[Sample], base: list[Sample], pool: str, concurrency: int) -> list[Row]:
    rate, base_rate = median([s.rate for s in ours]), median([s.rate for s in base])
    ratio = rate / base_rate
    jobs, base_jobs = sum(s.jobs for s in ours), sum(s.jobs for s in base)
    cpu, base_cpu = sum(s.worker_cpu for s in ours), sum(s.worker_cpu for s in base)
    sys_share = sum(s.worker_sys for s in ours) / cpu
    rounds = ", ".join(f"{s.rate:.0f}/{b.rate:.0f}" for s, b in zip(ours, base, strict=True))
    setup = f"{ours[0].jobs} jobs x {len(ours)} rounds, {pool} pool x {concurrency}"
    return [
        Row(
            "P1",
            "throughput",
            rate,
            "jobs/s",
            base_rate,
            "no-op tasks",
            goal=f">= {GOAL_RATIO}x no-op",
            passed=ratio >= GOAL_RATIO,
            note=f"{setup}; median; rounds pipeline/no-op: {rounds}; "
            f"machine CPU busy {machine_busy(ours):.0%} / {machine_busy(base):.0%}",
        ),
        Row(
            "P1",
            "worker CPU per start",
            cpu / jobs * 1e6,
            "us",
            base_cpu / base_jobs * 1e6,
            "no-op task",
            note=f"worker process tree, /proc utime+stime ({sys_share:.0%} system)",
        ),
        Row(
            "P1",
            "Redis commands per start",
            sum(s.commands * s.jobs for s in ours) / jobs,
            "",
            sum(s.commands * s.jobs for s in base) / base_jobs,
            "no-op task",
            note="INFO commandstats: producer + worker, commands inside Lua included",
        ),
        sandbox_row(sum(s.sandbox_cpu for s in ours), jobs),
    ]


def sandbox_row(cpu: float, jobs: int) -> Row:
    """The emulator's CPU per start; none when the run was shorter than one clock tick of it."""
    note = "the C8 emulator (werkzeug), its own process on the same 2 cores"
    if cpu <= 0:  # /proc counts in ticks (10 ms): a few dozen quick starts may not reach one
        return Row("P1", "sandbox CPU per start", None, "us", note=f"{note}; under one tick")
    return Row("P1", "sandbox CPU per start", cpu / jobs * 1e6, "us", note=note)


def command_breakdown(ours: list[Sample], base: list[Sample]) -> str:
    """Redis commands per start, by command, pipeline next to no-op."""
    jobs, base_jobs = sum(s.jobs for s in ours), sum(s.jobs for s in base)
    calls: Counter[str] = sum((s.calls for s in ours), Counter())
    base_calls: Counter[str] = sum((s.calls for s in base), Counter())
    lines = [
        "### P1: Redis commands per start, by command",
        "",
        "Counted by `INFO commandstats` (commands run inside Lua scripts count too).",
        "",
        "| command | pipeline | no-op |",
        "|---|---|---|",
    ]
    for name in sorted(set(calls) | set(base_calls), key=lambda c: -calls[c] - base_calls[c]):
        per, base_per = calls[name] / jobs, base_calls[name] / base_jobs
        if per >= 0.005 or base_per >= 0.005:
            lines.append(f"| {name} | {per:.2f} | {base_per:.2f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ profiling


def py_spy() -> str | None:
    """The py-spy binary (``pip install py-spy``), next to this Python or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def profile_round(bench: Bench, worker: Worker, n: int, out: Path) -> str:
    """One more (unmeasured) pipeline round with py-spy sampling the worker."""
    binary = py_spy()
    if binary is None:
        return "### P1 profile\n\npy-spy not installed (`pip install py-spy`): no profile taken."
    args = [
        *(binary, "record", "--pid", str(worker.pid), "--rate", "200", "--nonblocking", "--gil"),
        *("--format", "raw", "--output", str(out)),
    ]
    spy = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def wait_attached() -> None:
        # py-spy prints its banner once it samples; reading it is the readiness signal.
        assert spy.stdout is not None
        banner = spy.stdout.readline()
        if not banner:
            raise RuntimeError("py-spy exited at start (no ptrace permission?)")

    try:
        bench.run(worker, make_jobs(n), during=wait_attached)
    finally:
        spy.send_signal(signal.SIGINT)
        spy.communicate(timeout=60)
    return summarize_profile(out)


def summarize_profile(path: Path, top: int = 15) -> str:
    """Self time by leaf function, and inclusive time of our own (worker/) functions."""
    leaf: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        total += count
        leaf[frames[-1]] += count
        for frame in set(frames):
            if frame.split(" (", 1)[-1].startswith("worker/"):
                ours[frame] += count
    if not total:
        return "### P1 profile\n\nno samples"

    def listing(counter: Counter[str]) -> list[str]:
        return [f"| {100 * c / total:.1f}% | `{name}` |" for name, c in counter.most_common(top)]

    return "\n".join(
        [
            f"### P1 profile of the worker (py-spy, {total} samples, raw stacks in `{path}`)",
            "",
            "Self time (leaf function):",
            "",
            "| share | function |",
            "|---|---|",
            *listing(leaf),
            "",
            "Inclusive time of our own code (`worker/`):",
            "",
            "| share | function |",
            "|---|---|",
            *listing(ours),
        ]
    )


def _frame(raw: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (path/to/module.py)``, path shortened."""
    name, _, where = raw.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    for marker in ("site-packages/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{name} ({file})" if file else name


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="jobs per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--profile", type=Path, help="py-spy raw stacks file (one extra round)")
    args = parser.parse_args(argv)
    with Bench.open() as bench:
        report = run(bench, args.n, args.rounds, args.pool, args.concurrency, args.profile)
    print(table(report.rows))
    for detail in report.details:
        print("\n" + detail)
    return report


if __name__ == "__main__":
    main()
