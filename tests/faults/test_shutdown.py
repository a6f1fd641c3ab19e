"""SIGTERM lets in-flight starts finish and loses nothing that was still queued."""

from __future__ import annotations

import worker
from tests.faults.conftest import FaultStack, assert_clean


def test_sigterm_finishes_in_flight_starts_and_hands_back_the_rest(faults: FaultStack) -> None:
    app = faults.sandbox.app("camunda8")
    app.faults.configure(latency_ms=500)
    first = faults.start_worker(pool="threads", concurrency=4)
    jobs = [
        {
            "target": "orders",
            "process": "order-process",
            "variables": {"n": i},
            "idempotency_key": f"term-{i}",
        }
        for i in range(20)
    ]
    ids = worker.enqueue_many(jobs)
    assert app.wait_for_instances(1, timeout=30)  # starts are in flight
    faults.stack.stop_process(first, timeout=60)  # SIGTERM: Celery's warm shutdown
    finished_by_first = app.count()
    assert finished_by_first >= 4  # the in-flight ones completed, not abandoned
    faults.start_worker(pool="threads", concurrency=4)
    verdict = faults.verify("SIGTERM mid-run, then a new worker", ids, timeout=120)
    assert_clean(verdict, faults.logs())
    assert verdict.created == 20 and app.count() == 20
