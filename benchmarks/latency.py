"""P4 latency: one job at a time on an idle system, enqueue → result, zero-latency engine.

Each sample is wall-clock time around the public producer API, exactly as an
application would call it: ``worker.enqueue(job)`` then ``worker.wait(job_id)``
(which blocks on the result's notification list, no polling). Warm-up jobs
first, so connections and the OAuth-free C8 session are open.

    python -m benchmarks.latency --samples 200
"""

from __future__ import annotations

import argparse
import time

import worker as api
from benchmarks.common import Bench, Report, Row, make_jobs, percentile, table

GOAL_P50_MS = 10.0


def run(
    bench: Bench, samples: int = 200, warmup: int = 20, pool: str = "threads", concurrency: int = 16
) -> Report:
    worker = bench.start_worker("pipeline", pool, concurrency)
    total: list[float] = []
    enqueue: list[float] = []
    try:
        for index, job in enumerate(make_jobs(warmup + samples)):
            start = time.perf_counter()
            job_id = api.enqueue(job)
            sent = time.perf_counter()
            result = api.wait(job_id, timeout=30)
            done = time.perf_counter()
            if result is None or result.status != "created":
                raise AssertionError(f"P4: job {job_id} ended {result and result.status}")
            if index >= warmup:
                total.append((done - start) * 1000)
                enqueue.append((sent - start) * 1000)
    finally:
        bench.stop_worker(worker)
    return Report(rows(total, enqueue))


def rows(total: list[float], enqueue: list[float]) -> list[Row]:
    p50 = percentile(total, 50)
    spread = f"mean {sum(total) / len(total):.1f} ms, max {max(total):.1f} ms"
    return [
        Row(
            "P4",
            "latency p50",
            p50,
            "ms",
            goal=f"<= {GOAL_P50_MS:.0f} ms",
            passed=p50 <= GOAL_P50_MS,
            note=f"{len(total)} sequential jobs; of which worker.enqueue() p50 "
            f"{percentile(enqueue, 50):.1f} ms",
        ),
        Row("P4", "latency p99", percentile(total, 99), "ms", note=spread),
    ]


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    with Bench.open() as bench:
        report = run(bench, args.samples, args.warmup, args.pool, args.concurrency)
    print(table(report.rows))
    return report


if __name__ == "__main__":
    main()
