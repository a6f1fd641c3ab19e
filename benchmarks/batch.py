"""Batch submit vs a naive send_task loop: the same generated CSV, the same broker.

* ours: ``worker.batch.submit`` — stream the file, validate every row (types,
  keys, duplicates, the C8 adapter's ``build_request``), then publish in
  chunks (on Redis: one template message per chunk, one ``LPUSH`` per chunk);
* naive: ``csv.DictReader`` and one ``app.send_task`` per row, no validation.

Each run is a fresh child process (``--child``) that does only that run, so
its peak RSS (``ru_maxrss``) and CPU time are the run's own: imports (Celery,
kombu, pydantic; reported as "after imports") plus what the batch adds. Both
publish to one embedded Redis (`worker.local.embedded.EmbeddedRedis`); nothing
consumes the jobs: every 50,000 rows the child empties the queue and the
in-flight registry, standing in for workers, so Redis memory stays small.
The issue's goals: validate + enqueue >= 10,000 rows/s (judged from 100,000
rows: a smaller file is mostly start-up), and <= 150 MB peak RSS for a
1,000,000-row file (``--rows 1000000 --skip-naive``).

    python -m benchmarks.batch [--rows 100000] [--chunk 1000] [--skip-naive]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, Report, Row, table

TARGET, PROCESS, QUEUE = "orders", "order-process", "startproc.jobs"
MAPS = ["customer_id=customerId", "name", "email", "amount:float", "vip:bool", "signup:date"]
DRAIN_EVERY = 50_000
GOAL_RATE, GOAL_RATE_ROWS = 10_000.0, 100_000  # a smaller file is mostly start-up
GOAL_RSS_MB, GOAL_RSS_ROWS = 150.0, 1_000_000
MARK = "BATCH-CHILD-JSON "
CHILD_TIMEOUT = 1800.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


# ------------------------------------------------------------------- in the child


def drain(client: Any) -> None:
    """What workers would do meanwhile: take the queued jobs, decide them."""
    from worker.keys import INFLIGHT, INFLIGHT_DEADLINES

    client.delete(QUEUE, INFLIGHT, INFLIGHT_DEADLINES)


def ours(path: Path, chunk: int, client: Any, dry_run: bool) -> dict[str, Any]:
    from worker.batch import BatchSummary, submit
    from worker.config import settings
    from worker.targets import load_targets

    def drained(chunks: int, _summary: BatchSummary) -> None:
        if chunks % max(DRAIN_EVERY // chunk, 1) == 0:
            drain(client)

    cfg = settings()
    targets = load_targets(cfg.targets)
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
        on_chunk=drained,
        settings=cfg,
        targets=targets,
    )
    elapsed = time.perf_counter() - started
    assert summary.invalid == 0 and (dry_run or summary.enqueued == summary.rows), summary
    return {"seconds": elapsed, "phases": summary.seconds}


def naive(path: Path, client: Any, broker_url: str) -> dict[str, Any]:
    """What any Celery app can do (CONTRACT section 3): one ``send_task`` per row."""
    from celery import Celery

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
                drain(client)
    elapsed = time.perf_counter() - started
    app.close()
    return {"seconds": elapsed, "phases": {}}


def child(run: str, path: Path, chunk: int) -> None:
    """One run in this process; prints its figures as one JSON line after `MARK`."""
    import importlib

    import redis

    url = os.environ["STARTPROC_BROKER_URL"]
    if run != "naive":
        importlib.import_module("worker.celery_app")  # before timing, like the naive Celery
        importlib.import_module("worker.batch.run")
    client = redis.Redis.from_url(url)
    base_rss, base_cpu = peak_rss_mb(), cpu_seconds()
    if run == "naive":
        figures = naive(path, client, url)
    else:
        figures = ours(path, chunk, client, dry_run=run == "dry")
    figures.update(rss_mb=peak_rss_mb(), base_rss_mb=base_rss, cpu_seconds=cpu_seconds() - base_cpu)
    drain(client)
    client.close()
    print(MARK + json.dumps(figures), flush=True)


# ------------------------------------------------------------------- the parent


def spawn(run: str, path: Path, chunk: int, env: dict[str, str]) -> dict[str, Any]:
    args = ["--child", run, "--file", str(path), "--chunk", str(chunk)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.batch", *args],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    marked = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not marked:
        print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
        raise RuntimeError(f"benchmarks.batch --child {run} failed (exit {done.returncode})")
    figures: dict[str, Any] = json.loads(marked[-1].removeprefix(MARK))
    return figures


def rows_for(
    n: int, size_mb: float, batch: dict[str, Any], dry: dict[str, Any], plain: dict[str, Any] | None
) -> list[Row]:
    batch_s, phases = batch["seconds"], batch["phases"]
    rate, naive_rate = n / batch_s, n / plain["seconds"] if plain else None
    at_goal_size = n >= GOAL_RSS_ROWS
    return [
        Row(
            "batch",
            "validate + enqueue",
            rate,
            "rows/s",
            naive_rate,
            "naive send_task loop",
            f">= {GOAL_RATE:,.0f} rows/s",
            rate >= GOAL_RATE if n >= GOAL_RATE_ROWS else None,
            f"{rate / GOAL_RATE:.2f}x the goal; {batch_s:.1f}s (validate "
            f"{phases.get('validate', 0):.1f}s, enqueue {phases.get('enqueue', 0):.1f}s); "
            f"CPU {1e6 * batch['cpu_seconds'] / n:.0f} us/row"
            + (f"; naive {plain['seconds']:.1f}s" if plain else "")
            + ("" if n >= GOAL_RATE_ROWS else f"; the goal is checked at {GOAL_RATE_ROWS:,}+"),
        ),
        Row(
            "batch",
            "validate only (dry run)",
            n / dry["seconds"],
            "rows/s",
            note=f"{dry['seconds']:.1f}s; CPU {1e6 * dry['cpu_seconds'] / n:.0f} us/row",
        ),
        Row(
            "batch",
            "peak RSS (own process)",
            batch["rss_mb"],
            "MB",
            goal=f"<= {GOAL_RSS_MB:g} MB at {GOAL_RSS_ROWS:,} rows",
            passed=batch["rss_mb"] <= GOAL_RSS_MB if at_goal_size else None,
            note=f"{n:,} rows, {size_mb:.0f} MB file; {batch['base_rss_mb']:.0f} MB after "
            "imports" + ("" if at_goal_size else f"; the goal is checked at {GOAL_RSS_ROWS:,}"),
        ),
    ]


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--skip-naive", action="store_true", help="memory check only")
    parser.add_argument("--child", choices=("batch", "dry", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.file, args.chunk)
        return Report([])
    from worker.local.embedded import EmbeddedRedis

    n = args.rows
    with tempfile.TemporaryDirectory(prefix="startproc-bench-") as tmp, EmbeddedRedis() as server:
        targets = Path(tmp, "targets.toml")
        targets.write_text(
            f'[targets.{TARGET}]\nengine = "camunda8"\nbase_url = "http://127.0.0.1:9"\n'
        )
        env = {"STARTPROC_BROKER_URL": server.url, "STARTPROC_TARGETS": str(targets)}
        path = generate(Path(tmp, "customers.csv"), n)
        size_mb = path.stat().st_size / 2**20
        batch = spawn("batch", path, args.chunk, env)
        dry = spawn("dry", path, args.chunk, env)
        plain = None if args.skip_naive else spawn("naive", path, args.chunk, env)
    rows = rows_for(n, size_mb, batch, dry, plain)
    print(table(rows))
    return Report(rows)


if __name__ == "__main__":
    main()
