"""Instructions per ``StartService.handle()``, counted by ``valgrind --tool=callgrind``.

Wall-clock rates swing by tens of percent on a shared 2-core machine;
instruction counts repeat to about 0.1 %. A child process builds the worker's
runtime (the same wiring as a Celery worker), warms up, then calls ``handle()``
``n`` times with fresh C8 jobs against the zero-latency sandbox and a private
Redis, both in other processes (callgrind counts only the child). Two
children run under callgrind, one with ``n`` calls and one with none; the
difference divided by ``n`` is one call, with start-up and warm-up cancelled.

    python -m benchmarks.instructions [--calls 300]       # on a `Bench` of its own
    python -m benchmarks.instructions --repo /tmp/base    # another checkout's code (A/B)
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from benchmarks import callgrind
from benchmarks.common import REPO, Bench, Report, Row, make_jobs, table

WARMUP = 50
GOAL_INSTRUCTIONS = 1_400_000


@dataclass(frozen=True)
class Count:
    calls: int
    per_call: float
    repo: Path


def child(calls: int, worker_from: Path) -> None:
    """Inside callgrind: warm up, then ``calls`` handle() calls (environment set by the parent).

    The ``worker`` package comes from ``worker_from`` (ours, or a baseline checkout's).
    """
    callgrind.use_worker_from(worker_from)
    from worker.config import settings
    from worker.logs import configure
    from worker.models import utcnow
    from worker.runtime import runtime
    from worker.service import Delivery, Done

    cfg = settings()
    configure(cfg.log_level, cfg.log_format)  # as a worker does: one JSON line per job
    service = runtime().service
    for job in make_jobs(WARMUP + calls, prefix=f"cg{os.getpid()}"):
        job_id = f"job-{job['business_key']}"
        outcome = service.handle(job, Delivery(job_id=job_id, first_seen=utcnow()))
        if not isinstance(outcome, Done) or outcome.result.status != "created":
            raise SystemExit(f"handle() did not create an instance: {outcome!r}")
    callgrind.check_worker_from(worker_from)


def count(calls: int, repo: Path = REPO) -> Count:
    """Instructions per handle() for the code in ``repo``, on the stack this process set up."""

    def child_args(n: int) -> list[str]:
        return ["--worker-from", str(repo), "--child", str(n)]

    return Count(calls, callgrind.per_call(calls, child_args, "benchmarks.instructions"), repo)


def rows(counts: list[Count]) -> list[Row]:
    ours = [c for c in counts if c.repo == REPO]
    per_call = sorted(c.per_call for c in ours)
    value = per_call[len(per_call) // 2]
    spread = f"{per_call[0]:,.0f}-{per_call[-1]:,.0f}" if len(per_call) > 1 else "one run"
    result = [
        Row(
            "P1",
            "instructions per handle()",
            value,
            "",
            goal=f"<= {GOAL_INSTRUCTIONS / 1e6:.1f} M",
            passed=value <= GOAL_INSTRUCTIONS,
            note=f"callgrind, ({ours[0].calls} + {WARMUP} calls) - ({WARMUP} calls), "
            f"client side only (Redis, sandbox in other processes); runs: {spread}",
        )
    ]
    for other in (c for c in counts if c.repo != REPO):
        result.append(
            Row(
                "P1",
                f"instructions per handle(), {other.repo.name}",
                other.per_call,
                "",
                note="the same count for another checkout, alternated with ours",
            )
        )
    return result


def run(bench: Bench, calls: int = 300, repeats: int = 1, others: tuple[Path, ...] = ()) -> Report:
    """Count ours (and other checkouts', alternating) ``repeats`` times on ``bench``'s stack."""
    del bench  # its environment (Redis, sandbox, targets) is what the children inherit
    if shutil.which("valgrind") is None:
        return Report([Row("P1", "instructions per handle()", None, "", note="no valgrind")])
    counts: list[Count] = []
    for _ in range(repeats):
        for repo in (REPO, *others):
            counts.append(count(calls, repo))
    return Report(rows(counts))


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-from", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--repo", type=Path, action="append", default=[], help="A/B checkout")
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child, args.worker_from or REPO)
        return Report([])
    with Bench.open() as bench:
        report = run(bench, args.calls, args.repeats, tuple(p.resolve() for p in args.repo))
    print(table(report.rows))
    return report


if __name__ == "__main__":
    main()
