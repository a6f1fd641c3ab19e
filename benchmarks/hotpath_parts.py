"""Instructions per call of single parts of one start, counted by ``valgrind --tool=callgrind``.

The parts a profile of ``StartService.handle()`` singled out (issue 19), each
run alone in process, so a change to one is measured without the noise of the
rest (Redis, HTTP):

* ``log``: the ``job.finished`` line as `StartService.done` writes it, with the
  task's context bound (``job_id``, ``attempt``), JSON to stderr on /dev/null;
* ``retry``: `RetryPolicy.call` whose first attempt succeeds (nearly every start);
* ``retry-fail-once``: the same, first attempt transient, the second succeeds;
* ``metrics``: `metrics.job_finished` for a created result with its latency;
* ``metrics-retry``: `metrics.in_call_retry`;
* the pure steps of a Camunda 8 start, in `handle()`'s order, on the runtime a
  worker builds (a `Bench` stack's environment, nothing sent): ``parse``
  (`compact_json` and `Job.parse`), ``attempt`` (the key and fingerprint),
  ``start-request`` (built and checked sendable), ``credentials`` (the
  request prepared for the direct path), ``claim-call`` (the claim's
  arguments), ``result`` and ``record-call`` (the result, its JSON, envelope
  and script arguments).

A child under callgrind sets the part up, warms it up, then calls it ``n``
times; one child with ``n`` calls and one with none, the difference divided by
``n`` is one call (start-up and warm-up cancel). Counts repeat to within a few
instructions, unlike timings on a shared machine.

    python -m benchmarks.hotpath_parts [--calls 300] [--part log ...]
    python -m benchmarks.hotpath_parts --repo /tmp/base     # also another checkout's code (A/B)
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks import callgrind
from benchmarks.callgrind import REPO

STEPS = ("parse", "attempt", "start-request", "credentials", "claim-call", "result",
         "record-call")
"""Parts that need the worker's runtime (targets, Redis client): run on a `Bench` stack."""
PARTS = ("log", "retry", "retry-fail-once", "metrics", "metrics-retry", *STEPS)
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


def _step(name: str) -> Callable[[], None]:
    """One pure step of `StartService.handle` for a C8 job, over a few jobs in turn."""
    from benchmarks.common import make_jobs
    from worker.attempt import Attempt
    from worker.models import Job, compact_json, utcnow
    from worker.runtime import runtime
    from worker.service import Delivery, identified

    service = runtime().service
    runs = []
    for raw in make_jobs(16, prefix="part"):
        delivery = identified(raw, Delivery(job_id=f"job-{raw['business_key']}",
                                            first_seen=utcnow()))
        run = Attempt(service, Job.parse(raw, compact_json(raw)), delivery)
        run.prepare()
        runs.append((raw, run, run._result("created", instance_id="2251799813685249")))
    turns = itertools.cycle(runs)
    steps: dict[str, Callable[[Any, Attempt, Any], object]] = {
        "parse": lambda raw, run, result: Job.parse(raw, compact_json(raw)),
        "attempt": lambda raw, run, result: Attempt(service, run.job, run.delivery),
        "start-request": lambda raw, run, result: run.engine.start_request(run.job, run.key),
        "credentials": lambda raw, run, result: run._credentials_first(run.request),
        "claim-call": lambda raw, run, result: run._claim_call(),
        "result": lambda raw, run, result: run._result("created", instance_id="1"),
        "record-call": lambda raw, run, result: service.results.record_call(result, True),
    }
    step = steps[name]

    def part() -> None:
        step(*next(turns))

    return part


def child(part_name: str, calls: int, worker_from: Path) -> None:
    """Set ``part_name`` up with the ``worker`` package of ``worker_from``, then call it."""
    callgrind.use_worker_from(worker_from)
    builders: dict[str, Callable[[], Callable[[], None]]] = {
        "log": _log,
        "retry": lambda: _retry(fail_once=False),
        "retry-fail-once": lambda: _retry(fail_once=True),
        "metrics": lambda: _metrics(retry=False),
        "metrics-retry": lambda: _metrics(retry=True),
        **{name: lambda name=name: _step(name) for name in STEPS},
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
    parts = args.part or PARTS
    counts: dict[tuple[str, str], float] = {}
    print(f"| part | {' | '.join(str(r) for r in repos)} |")
    print(f"|---|{'---:|' * len(repos)}")
    with _stack() if any(part in STEPS for part in parts) else contextlib.nullcontext():
        for part in parts:
            for repo in repos:
                counts[part, str(repo)] = per_call(part, args.calls, repo)
            cells = " | ".join(f"{counts[part, str(r)]:,.0f}" for r in repos)
            print(f"| {part} | {cells} |", flush=True)
    return counts


def _stack() -> contextlib.AbstractContextManager[object]:
    """A `Bench` stack whose environment the children inherit (the steps need one)."""
    from benchmarks.common import Bench

    return Bench.open()


if __name__ == "__main__":
    main()
