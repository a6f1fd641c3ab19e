"""What became of a batch: counters, waiting for this run's rows, and the per-row report.

Two sources, each for what it answers cheaply:

* the per-batch counters ``startproc:batch:{id}`` (`ResultStore.record` adds
  one per recorded result, by status) plus a small meta hash written at
  submit (expected rows, target, process, file) answer ``batch status`` at
  any time in O(1), without scanning a queue;
* the results index by job id answers "has *this* row finished, and how?".
  The run's manifest names the job answering for each row (sent now, or
  started by an earlier run), so the wait and the report walk it and MGET
  the result keys in chunks: exact per row and per run, whatever earlier
  runs of the same batch id added to the counters (a row that failed and
  was retried counts its failure and its success there).
"""

from __future__ import annotations

import csv
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

import redis

from worker import keys
from worker.batch.spool import Answer, Entry
from worker.models import iso_ms, utcnow

STATUSES = ("created", "duplicate", "failed")
REPORT_FIELDS = ("line", "business_key", "status", "instance_id", "error", "job_id")
WINDOW = 2000
POLL_SECONDS = 0.2


counters_key = keys.batch_counters
meta_key = keys.batch_meta


@dataclass
class Tally:
    """Outcomes of one run's rows."""

    total: int
    created: int = 0
    duplicate: int = 0
    failed: int = 0

    @property
    def done(self) -> int:
        return self.created + self.duplicate + self.failed

    @property
    def pending(self) -> int:
        return max(self.total - self.done, 0)

    def add(self, status: str) -> None:
        if status in STATUSES:
            setattr(self, status, getattr(self, status) + 1)

    def note(self) -> str:
        return f"created {self.created:,} dup {self.duplicate:,} failed {self.failed:,}"


@dataclass
class BatchStatus:
    batch_id: str
    created: int = 0
    duplicate: int = 0
    failed: int = 0
    expected: int | None = None
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.created + self.duplicate + self.failed

    @property
    def pending(self) -> int | None:
        return None if self.expected is None else max(self.expected - self.done, 0)

    @property
    def known(self) -> bool:
        return self.done > 0 or self.expected is not None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "done": self.done, "pending": self.pending}


def iso_now() -> str:
    return iso_ms(utcnow())


def write_meta(
    client: redis.Redis, batch_id: str, ttl_seconds: int, expected: int, **fields: str
) -> None:
    """What ``batch status`` needs to say "pending": the row count of the latest submit."""
    pipe = client.pipeline(transaction=True)
    meta: dict[Any, Any] = {"expected": expected, "submitted_at": iso_now(), **fields}
    pipe.hset(meta_key(batch_id), mapping=meta)
    pipe.expire(meta_key(batch_id), ttl_seconds)
    pipe.execute()


def read_status(client: redis.Redis, batch_id: str) -> BatchStatus:
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(counters_key(batch_id))
    pipe.hgetall(meta_key(batch_id))
    counts, meta = pipe.execute()
    status = BatchStatus(
        batch_id,
        created=int(counts.get("created", 0)),
        duplicate=int(counts.get("duplicate", 0)),
        failed=int(counts.get("failed", 0)),
    )
    if meta:
        status.expected = int(meta.pop("expected", 0))
        status.meta = dict(meta)
    return status


def _fetch(client: redis.Redis, job_ids: list[str]) -> list[dict[str, Any] | None]:
    values: list[Any] = client.mget([keys.result_key(j) for j in job_ids])
    return [json.loads(v) if v else None for v in values]


def wait_for(
    client: redis.Redis,
    job_ids: Iterable[str],
    total: int,
    timeout: float | None,
    on_update: Callable[[Tally], None] = lambda _t: None,
    interval: float = POLL_SECONDS,
) -> Tally:
    """Until every job has a result or ``timeout`` seconds pass (None: no limit).

    Checks a sliding window of at most `WINDOW` unfinished jobs, refilled in
    file order, so memory stays flat however long the batch; one MGET per
    ``interval`` whatever the rate results arrive at (a busy loop here would
    take CPU from the workers on a small machine).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    tally = Tally(total)
    source = iter(job_ids)
    window: deque[str] = deque()
    while True:
        window.extend(islice(source, WINDOW - len(window)))
        if not window:
            return tally
        more = len(window) == WINDOW  # the source may hold further rows
        pending = list(window)
        window.clear()
        for job_id, result in zip(pending, _fetch(client, pending), strict=True):
            if result is None:
                window.append(job_id)
            else:
                tally.add(str(result.get("status")))
        on_update(tally)
        if more and len(window) <= WINDOW // 2:
            continue  # half the window finished: look at the next rows now
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return tally
        time.sleep(interval if remaining is None else min(interval, remaining))


def report_rows(
    client: redis.Redis | None, entries: Iterator[Entry], answers: Iterator[Answer]
) -> Iterator[dict[str, Any]]:
    """One report row per spooled row: its result, or rejected / pending / not_sent.

    ``answers`` holds one item per valid row that pass 2 reached, in order;
    valid rows after the last answer were not sent (an interrupted run).
    """
    while True:
        chunk = list(islice(entries, 1000))
        if not chunk:
            return
        pairs = [(e, next(answers, None) if e.key else None) for e in chunk]
        ids = [a.job_id for _, a in pairs if a is not None]
        results = dict(zip(ids, _fetch(client, ids), strict=True)) if client and ids else {}
        for entry, answer in pairs:
            yield _report_row(entry, answer, results.get(answer.job_id) if answer else None)


def _report_row(
    entry: Entry, answer: Answer | None, result: dict[str, Any] | None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "line": entry.line,
        "business_key": entry.business_key,
        "status": "rejected",
        "instance_id": None,
        "error": entry.error,
        "job_id": answer.job_id if answer else None,
    }
    if entry.key is None:
        return row
    if answer is None:
        row["status"] = "not_sent"
    elif result is None:
        row["status"] = "pending"
    else:
        error = result.get("error") or {}
        row["status"] = result.get("status")
        row["instance_id"] = result.get("instance_id")
        row["error"] = f"{error.get('kind')}: {error.get('message')}" if error else None
    return row


def write_report(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """CSV or JSONL by the file's suffix; returns the number of rows written."""
    count = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        write = _report_writer(path, handle)
        for row in rows:
            write(row)
            count += 1
    return count


def _report_writer(path: Path, handle: IO[str]) -> Callable[[dict[str, Any]], None]:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):

        def write_json(row: dict[str, Any]) -> None:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

        return write_json
    writer = csv.DictWriter(handle, fieldnames=REPORT_FIELDS)
    writer.writeheader()

    def write_csv(row: dict[str, Any]) -> None:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})

    return write_csv
