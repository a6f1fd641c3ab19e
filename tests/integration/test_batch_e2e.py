"""Batch files through the real pipeline: a Celery worker process, Redis, the C8 sandbox.

Instance counts are read from the sandbox itself, so "started once" means
what the engine saw, not what our own bookkeeping claims. Every wait has a
deadline (``submit(wait=…)``), no test sleeps.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import Pipeline
from worker.batch import BatchInterrupted, BatchSummary, status, submit

pytestmark = pytest.mark.integration

TARGET, PROCESS = "orders", "order-process"
# The issue asks for 10,000 rows. The sandbox pipeline here does ~100 starts/s
# on 2 cores (CPU-bound: more worker threads do not help), so 10,000 rows take
# ~2 minutes; the default suite runs 2,000 and STARTPROC_BATCH_E2E_ROWS=10000
# runs the full size.
BIG_ROWS = int(os.environ.get("STARTPROC_BATCH_E2E_ROWS", "2000"))


@pytest.fixture(autouse=True)
def drained(live: Pipeline) -> Iterator[None]:
    """Wait (with a deadline) until the worker has taken and finished every queued job.

    A re-run re-sends rows still queued from the run before; their copies are
    answered from the results index, but only while it exists: the next
    test's Redis flush would turn a late copy into a fresh start.
    """
    yield
    client = redis.Redis.from_url(live.broker_url)
    deadline = time.monotonic() + 60
    try:
        while client.llen(live.jobs_queue) or client.hlen("unacked"):
            assert time.monotonic() < deadline, "the worker did not drain the jobs queue"
            client.blpop(["startproc:test:drain"], timeout=0.05)  # a short, bounded pause
    finally:
        client.close()


def write_rows(path: Path, first: int, count: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "name", "amount", "vip"])
        for n in range(first, first + count):
            writer.writerow(
                [f"C-{n:06d}", f"Customer {n} {path.name}", f"{n}.25", "yes" if n % 7 else "no"]
            )
    return path


def run(path: Path, **kwargs: object) -> BatchSummary:
    options: dict[str, object] = {
        "target": TARGET,
        "process": PROCESS,
        "business_key": "customer_id",
        "maps": ["customer_id=customerId", "name", "amount:float", "vip:bool"],
    }
    options.update(kwargs)
    return submit(path, **options)  # type: ignore[arg-type]


def test_rerun_starts_nothing_new_and_ten_new_rows_start_ten(
    live: Pipeline, tmp_path: Path
) -> None:
    sandbox = live.sandbox.app("camunda8")
    first = run(write_rows(tmp_path / "customers.csv", 0, 300), wait=60)
    assert (first.enqueued, first.created, first.pending, first.exit_code) == (300, 300, 0, 0)
    assert sandbox.count() == 300

    again = run(tmp_path / "customers.csv", wait=60)
    assert (again.enqueued, again.already_done, again.failed) == (0, 300, 0)
    assert sandbox.count() == 300

    grown = run(write_rows(tmp_path / "customers.csv", 0, 310), wait=60)
    assert (grown.enqueued, grown.already_done, grown.created) == (10, 300, 310)
    assert sandbox.count() == 310
    counts = status(grown.batch_id)
    assert (counts.created, counts.failed, counts.expected, counts.pending) == (310, 0, 310, 0)


def test_rows_in_flight_when_rerun_are_not_started_twice(live: Pipeline, tmp_path: Path) -> None:
    """A re-run while the first run's jobs are still queued sends them again: one start each."""
    path = write_rows(tmp_path / "racing.csv", 0, 400)
    first = run(path)  # no wait: most jobs are still queued when the second run sends
    second = run(path, wait=60)
    assert first.enqueued == 400
    assert second.enqueued + second.already_done == 400
    assert second.created + second.duplicate == 400 and second.failed == 0
    assert live.sandbox.app("camunda8").count() == 400


def test_rerun_retries_failed_rows_only(live: Pipeline, tmp_path: Path) -> None:
    sandbox = live.sandbox.app("camunda8")
    sandbox.faults.script([{"status": 400, "title": "INVALID_ARGUMENT", "message": "no"}])
    path = write_rows(tmp_path / "flaky.csv", 0, 20)
    first = run(path, wait=30, chunk=5)
    assert (first.created, first.failed, first.exit_code) == (19, 1, 1)
    assert sandbox.count() == 19

    second = run(path, wait=30, report=tmp_path / "flaky.csv.report.csv")
    assert (second.enqueued, second.already_done) == (1, 19)
    assert (second.created, second.failed, second.exit_code) == (20, 0, 0)
    assert sandbox.count() == 20


def test_interrupted_submit_continues_on_rerun(live: Pipeline, tmp_path: Path) -> None:
    path = write_rows(tmp_path / "interrupted.csv", 0, 1000)

    def stop_after_three(chunks_sent: int, _summary: BatchSummary) -> None:
        if chunks_sent == 3:
            raise KeyboardInterrupt

    with pytest.raises(BatchInterrupted) as stopped:
        run(path, chunk=100, on_chunk=stop_after_three)
    assert stopped.value.summary.enqueued == 300
    assert stopped.value.summary.interrupted

    resumed = run(path, chunk=100, wait=60, report=tmp_path / "report.csv")
    assert resumed.enqueued + resumed.already_done == 1000
    assert resumed.enqueued >= 700
    assert (resumed.created + resumed.duplicate, resumed.failed, resumed.pending) == (1000, 0, 0)
    assert live.sandbox.app("camunda8").count() == 1000
    with (tmp_path / "report.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1000
    assert {r["status"] for r in rows} <= {"created", "duplicate"}
    assert len({r["instance_id"] for r in rows}) == 1000


def test_invalid_rows_are_skipped_and_reported(live: Pipeline, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(
        "customer_id,name,amount,vip\n"
        "C-1,Ada,1.5,yes\n"
        "C-2,Bob,lots,no\n"
        ",Nobody,2,no\n"
        "C-1,Ada again,1.5,yes\n"
        "C-3,Cy,3,maybe\n"
        "C-4,Dee,4,no\n",
        encoding="utf-8",
    )
    summary = run(path, skip_invalid=True, wait=30, report=tmp_path / "out.jsonl")
    assert (summary.valid, summary.invalid, summary.created) == (2, 4, 2)
    assert summary.rejects_path == str(tmp_path / "mixed.rejects.csv")
    assert live.sandbox.app("camunda8").count() == 2
    report = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["status"] for line in report] == [
        "created",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "created",
    ]


@pytest.mark.timeout(900)  # the 10,000-row run takes ~1.5 min on 2 cores
def test_large_file_end_to_end_with_wait(live: Pipeline, tmp_path: Path) -> None:
    """2,000 rows by default; STARTPROC_BATCH_E2E_ROWS=10000 runs the issue's size."""
    path = write_rows(tmp_path / "big.csv", 0, BIG_ROWS)
    started = time.monotonic()
    summary = run(path, wait=max(60.0, BIG_ROWS / 40), report=tmp_path / "big-report.csv")
    elapsed = time.monotonic() - started
    assert summary.exit_code == 0, summary.to_dict()
    assert (summary.enqueued, summary.created, summary.pending) == (BIG_ROWS, BIG_ROWS, 0)
    assert live.sandbox.app("camunda8").count() == BIG_ROWS
    counts = status(summary.batch_id)
    assert (counts.created, counts.pending) == (BIG_ROWS, 0)
    with (tmp_path / "big-report.csv").open(encoding="utf-8") as handle:
        assert sum(1 for row in csv.DictReader(handle) if row["status"] == "created") == BIG_ROWS
    print(f"\n{BIG_ROWS} rows end to end in {elapsed:.1f}s ({summary.seconds})")
