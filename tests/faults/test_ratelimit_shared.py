"""A target's rate limit holds across two worker processes, measured at the engine."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import worker
from tests.faults.conftest import FaultStack, assert_clean


def _arrivals(faults: FaultStack) -> list[float]:
    stamps = [i["created_at"] for i in faults.sandbox.app("camunda8").instances]
    return sorted(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() for s in stamps)


def test_two_workers_share_one_limit(faults: FaultStack) -> None:
    targets = Path(faults.env["STARTPROC_TARGETS"])
    text = targets.read_text()
    targets.write_text(
        text.replace('engine = "camunda8"', 'engine = "camunda8"\nrate_limit = "20/s"')
    )
    faults.start_worker(pool="threads", concurrency=8)
    faults.start_worker(pool="threads", concurrency=8)
    jobs = [
        {"target": "orders", "process": "order-process", "variables": {"n": i}} for i in range(80)
    ]
    ids = worker.enqueue_many(jobs)
    verdict = faults.verify("rate limit 20/s, 2 workers", ids, timeout=120)
    assert_clean(verdict, faults.logs())
    assert verdict.created == 80
    arrivals = _arrivals(faults)
    busiest = max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals)
    assert busiest <= 20 + 2 + 2, busiest  # limit + burst (a tenth of a second) + clock slack
    assert arrivals[-1] - arrivals[0] >= (80 - 22) / 20  # it really was throttled
