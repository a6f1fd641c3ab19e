"""Two worker processes against an engine that takes 20 starts a second: they converge.

The ``orders`` target (Camunda 8) may send up to 200/s; the sandbox refuses
every start above 20/s with a 429. The workers share one adaptive rate in
Redis: it falls from the ceiling to about the engine's capacity after a few
rejections and stays near it, so the run ends with every job created once and
few rejections. (With a fixed 200/s every accepted start costs about nine
refused ones.) Both processes also share one OAuth2 token
(``token_cache = "redis"``). Bounds are counts, generous on purpose.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import redis

import worker
from tests.faults.conftest import FaultStack, assert_clean
from worker.keys import rate_key

CAPACITY = 20
JOBS = 160


def _arrivals(faults: FaultStack) -> list[float]:
    stamps = [i["created_at"] for i in faults.sandbox.app("camunda8").instances]
    return sorted(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() for s in stamps)


def test_two_workers_converge_on_the_engines_capacity(faults: FaultStack) -> None:
    targets = Path(faults.env["STARTPROC_TARGETS"])
    text = targets.read_text()
    text = text.replace('engine = "camunda8"', 'engine = "camunda8"\nrate_limit = "200/s"')
    text = text.replace('audience = "zeebe-api"', 'audience = "zeebe-api"\ntoken_cache = "redis"')
    targets.write_text(text)
    c8 = faults.sandbox.app("camunda8")
    c8.faults.configure(capacity_per_s=CAPACITY)
    faults.start_worker(pool="threads", concurrency=8)
    faults.start_worker(pool="threads", concurrency=8)
    jobs = [{"target": "orders", "process": "order-process", "variables": {"n": i}}
            for i in range(JOBS)]
    ids = worker.enqueue_many(jobs)
    verdict = faults.verify("adaptive rate, capacity 20/s, 2 workers", ids, timeout=110)
    assert_clean(verdict, faults.logs())
    assert verdict.created == JOBS and verdict.failed == 0
    refused = c8.stats()["faults_injected"].get("over_capacity", 0)
    assert refused <= JOBS // 2, f"{refused} starts refused for {JOBS} created"
    rate = redis.Redis.from_url(faults.redis_url).hget(rate_key("orders"), "rate")
    assert rate is not None
    assert CAPACITY / 8 <= float(rate) * 1000 <= 2 * CAPACITY  # near the capacity, not 200
    arrivals = _arrivals(faults)
    assert len(arrivals) == JOBS
    assert arrivals[-1] - arrivals[-100] <= 100 / (CAPACITY / 4)  # kept up at >= 5/s
    assert c8.stats()["token_requests"] == 1  # one token for both processes
