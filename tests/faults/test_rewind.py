"""Redis loses its last second of writes (a host crash under an everysec AOF, a failover
to a lagging replica), simulated faithfully: the AOF is copied, the run goes on, then the
server is SIGKILLed and restarted from the copy. Nothing may start twice or go missing."""

from __future__ import annotations

import pytest

import worker
from tests.faults.conftest import FaultStack, assert_clean
from tests.faults.lost_writes import found_after_the_switch, lose_the_next_second
from tests.faults.test_faults import c8_jobs


@pytest.mark.stack_env(appendonly=True, appendfsync="everysec")
def test_redis_rewound_mid_run(faults: FaultStack) -> None:
    """Claims, sends, results, acknowledgements and pops of the lost second are gone,
    while the engine kept the instances it created in it: those jobs come back, most
    as plain queue messages (popped in that second), not marked redelivered."""
    faults.start_worker(pool="threads", concurrency=4)
    faults.start_worker(pool="prefork", concurrency=2)
    faults.stack.start_beat()
    app = faults.sandbox.app("camunda8")
    app.faults.configure(latency_ms=50)
    ids = worker.enqueue_many(c8_jobs(300, "rewind"))
    assert app.wait_for_instances(20, timeout=60)
    lose_the_next_second(faults.embedded, app, ids)  # type: ignore[attr-defined]
    verdict = faults.verify("redis rewound 1 s mid-run", ids, timeout=120)
    assert_clean(verdict, faults.logs(), faults.workdir)
    assert verdict.created == 300 and app.count() == 300
    assert found_after_the_switch(faults), "no job started in the lost second came back"
