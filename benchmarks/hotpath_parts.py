"""Instructions per call of single parts of one start, counted by ``valgrind --tool=callgrind``.

The parts a profile of ``StartService.handle()`` singled out (issue 19), each
run alone in process, so a change to one is measured without the noise of the
rest (Redis, HTTP):

* ``log``: the ``job.finished`` line as `StartService.done` writes it, with the
  task's context bound (``job_id``, ``attempt``), JSON to stderr on /dev/null;
* ``retry``: `RetryPolicy.call` whose first attempt succeeds (nearly every start);
* ``retry-fail-once``: the same, first attempt transient, the second succeeds;
* ``metrics``: `metrics.job_finished` for a created result with its latency;
* ``metrics-retry``: `metrics.in_call_retry`.

A child under callgrind sets the part up, warms it up, then calls it ``n``
times; one child with ``n`` calls and one with none, the difference divided by
``n`` is one call (start-up and warm-up cancel). Counts repeat to within a few
instructions, unlike timings on a shared machine.

    python -m benchmarks.hotpath_parts [--calls 300] [--part log ...]
    python -m benchmarks.hotpath_parts --repo /tmp/base     # also another checkout's code (A/B)
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from benchmarks import callgrind
from benchmarks.callgrind import REPO

PARTS = ("log", "retry", "retry-fail-once", "metrics", "metrics-retry")
WARMUP = 20


# ------------------------------------------------------------------ inside callgrind


def _log() -> Callable[[], None]:
    import structlog

    from worker.logs import configure

    configure("INFO", "json")
    structlog.contextvars.bind_contextvars(job_id="job-0123456789", attempt=1)
    log = structlog.get_logger("worker.service")

    def part() -> None:
        log.info(
            "job.finished",
            job_id="job-0123456789",
            target="orders",
            status="created",
            instance_id="2251799813685249",
            error_kind=None,
        )

    return part


def _retry(fail_once: bool) -> Callable[[], None]:
    from worker.errors import TransientError
    from worker.retry import RetryPolicy

    policy = RetryPolicy(sleep=lambda _seconds: None)
    calls = [0]

    def attempt() -> str:
        calls[0] += 1
        if fail_once and calls[0] % 2:
            raise TransientError("503", http_status=503)
        return "2251799813685249"

    def on_retry(_error: TransientError) -> None:
        pass

    def part() -> None:
        policy.call(attempt, on_retry)

    return part


def _metrics(retry: bool) -> Callable[[], None]:
    from worker import metrics
    from worker.models import Result, utcnow

    now = utcnow()
    result = Result(
        job_id="job-0123456789",
        target="orders",
        engine="camunda8",
        status="created",
        enqueued_at=now - timedelta(seconds=0.3),
        finished_at=now,
    )
    if retry:
        return lambda: metrics.in_call_retry("orders")
    return lambda: metrics.job_finished(result)


def child(part_name: str, calls: int, worker_from: Path) -> None:
    """Set ``part_name`` up with the ``worker`` package of ``worker_from``, then call it."""
    callgrind.use_worker_from(worker_from)
    builders: dict[str, Callable[[], Callable[[], None]]] = {
        "log": _log,
        "retry": lambda: _retry(fail_once=False),
        "retry-fail-once": lambda: _retry(fail_once=True),
        "metrics": lambda: _metrics(retry=False),
        "metrics-retry": lambda: _metrics(retry=True),
    }
    part = builders[part_name]()
    callgrind.check_worker_from(worker_from)
    for _ in range(WARMUP + calls):
        part()


# ------------------------------------------------------------------ the parent


def per_call(part: str, calls: int, repo: Path) -> float:
    def child_args(n: int) -> list[str]:
        return ["--child", part, "--calls", str(n), "--worker-from", str(repo)]

    return callgrind.per_call(calls, child_args, "benchmarks.hotpath_parts")


def main(argv: list[str] | None = None) -> dict[tuple[str, str], float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", action="append", choices=PARTS, default=[])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repo", type=Path, action="append", default=[], help="A/B checkout")
    parser.add_argument("--child", choices=PARTS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-from", type=Path, default=REPO, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child, args.calls, args.worker_from)
        return {}
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    repos = [REPO, *(p.resolve() for p in args.repo)]
    counts: dict[tuple[str, str], float] = {}
    print(f"| part | {' | '.join(str(r) for r in repos)} |")
    print(f"|---|{'---:|' * len(repos)}")
    for part in args.part or PARTS:
        for repo in repos:
            counts[part, str(repo)] = per_call(part, args.calls, repo)
        cells = " | ".join(f"{counts[part, str(r)]:,.0f}" for r in repos)
        print(f"| {part} | {cells} |", flush=True)
    return counts


if __name__ == "__main__":
    main()
