"""Batch submit vs a naive send_task loop: the same generated CSV, the same broker, one run.

* ours: ``worker.batch.submit`` — stream the file, validate every row (types,
  keys, duplicates, the C8 adapter's ``build_request``), then publish in
  chunks on one connection (a Redis pipeline per chunk);
* naive: ``csv.DictReader`` and one ``app.send_task`` per row, no validation.

Both publish to an embedded Redis (`worker.local.embedded.EmbeddedRedis`); nothing
consumes the jobs (the queue is emptied every 50,000 rows, standing in for a
worker, so Redis memory stays small). Peak RSS is this process's
``ru_maxrss`` after each phase; the batch phase runs first, so its figure is
the batch's own peak. The issue's goals: ours >= 2x naive, and a 1,000,000-row
file under ~150 MB (``--rows 1000000 --skip-naive``).

    python -m benchmarks.batch [--rows 100000] [--chunk 1000] [--skip-naive]
"""

from __future__ import annotations

import argparse
import csv
import importlib
import resource
import tempfile
import time
from pathlib import Path

import redis
from celery import Celery

from benchmarks.common import Report, Row, table
from worker.config import Settings, environment, settings
from worker.local.embedded import EmbeddedRedis
from worker.targets import load_targets

TARGET, PROCESS, QUEUE = "orders", "order-process", "startproc.jobs"
MAPS = ["customer_id=customerId", "name", "email", "amount:float", "vip:bool", "signup:date"]
DRAIN_EVERY = 50_000
GOAL_RATIO, GOAL_RSS_MB = 2.0, 150.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(path: Path, rows: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "name", "email", "amount", "vip", "signup"])
        for n in range(rows):
            writer.writerow(
                [
                    f"C-{n:08d}",
                    f"Customer {n}",
                    f"customer{n}@example.com",
                    f"{n % 997}.{n % 100:02d}",
                    "yes" if n % 3 else "no",
                    f"20{n % 30:02d}-{n % 12 + 1:02d}-{n % 28 + 1:02d}",
                ]
            )
    return path


def ours(
    path: Path, chunk: int, client: redis.Redis, cfg: Settings, dry_run: bool = False
) -> tuple[float, dict[str, float]]:
    from worker.batch import BatchSummary, submit

    def drain(chunks: int, _summary: BatchSummary) -> None:
        if chunks % max(DRAIN_EVERY // chunk, 1) == 0:
            client.delete(QUEUE)

    started = time.perf_counter()
    summary = submit(
        path,
        target=TARGET,
        process=PROCESS,
        business_key="customer_id",
        maps=MAPS,
        batch_id=f"bench-{time.time_ns()}",
        chunk=chunk,
        dry_run=dry_run,
        on_chunk=drain,
        settings=cfg,
        targets=load_targets(cfg.targets),
    )
    elapsed = time.perf_counter() - started
    assert summary.invalid == 0 and (dry_run or summary.enqueued == summary.rows), summary
    return elapsed, summary.seconds


def naive(path: Path, client: redis.Redis, broker_url: str) -> float:
    """What any Celery app can do (CONTRACT section 3): one ``send_task`` per row."""
    app = Celery("naive-producer", broker=broker_url, set_as_current=False)
    app.send_task("startproc.warm-up", queue="startproc.bench.warm-up")  # connect before timing
    started = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as handle:
        for n, row in enumerate(csv.DictReader(handle), start=1):
            job = {
                "target": TARGET,
                "process": PROCESS,
                "variables": row,
                "business_key": row["customer_id"],
                "idempotency_key": f"naive:{row['customer_id']}",
            }
            app.send_task("startproc.start_process", kwargs={"job": job}, queue=QUEUE)
            if n % DRAIN_EVERY == 0:
                client.delete(QUEUE)
    elapsed = time.perf_counter() - started
    app.close()
    return elapsed


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--skip-naive", action="store_true", help="memory check only")
    args = parser.parse_args(argv)
    n = args.rows
    with tempfile.TemporaryDirectory(prefix="startproc-bench-") as tmp, EmbeddedRedis() as server:
        targets = Path(tmp, "targets.toml")
        targets.write_text(
            f'[targets.{TARGET}]\nengine = "camunda8"\nbase_url = "http://127.0.0.1:9"\n'
        )
        env = {"STARTPROC_BROKER_URL": server.url, "STARTPROC_TARGETS": str(targets)}
        with environment(env):
            cfg = settings()
            importlib.import_module("worker.celery_app")  # before timing, like the naive Celery

            client = redis.Redis.from_url(server.url)
            path = generate(Path(tmp, "customers.csv"), n)
            size_mb = path.stat().st_size / 2**20
            base_rss = peak_rss_mb()
            batch_s, phases = ours(path, args.chunk, client, cfg)
            batch_rss = peak_rss_mb()
            client.delete(QUEUE)
            dry_s, _ = ours(path, args.chunk, client, cfg, dry_run=True)
            naive_s = None if args.skip_naive else naive(path, client, server.url)
            client.close()
    ratio = naive_s / batch_s if naive_s else None
    rows = [
        Row(
            "batch",
            "validate + enqueue",
            n / batch_s,
            "rows/s",
            n / naive_s if naive_s else None,
            "naive send_task loop",
            f">= {GOAL_RATIO:g}x",
            None if ratio is None else ratio >= GOAL_RATIO,
            f"{batch_s:.1f}s (validate {phases.get('validate', 0):.1f}s, "
            f"enqueue {phases.get('enqueue', 0):.1f}s) vs {naive_s or 0:.1f}s",
        ),
        Row("batch", "validate only (dry run)", n / dry_s, "rows/s", note=f"{dry_s:.1f}s"),
        Row(
            "batch",
            "peak RSS",
            batch_rss,
            "MB",
            goal=f"< {GOAL_RSS_MB:g} MB (the issue: at 1M rows)",
            passed=batch_rss < GOAL_RSS_MB,
            note=f"{n:,} rows, {size_mb:.0f} MB file; {base_rss:.0f} MB before the batch",
        ),
    ]
    report = Report(rows)
    print(table(rows))
    return report


if __name__ == "__main__":
    main()
