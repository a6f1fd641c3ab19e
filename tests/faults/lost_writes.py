"""Losing Redis' last second of writes, and reading what came of it, for the fault tests.

`lose_the_next_second` does to a running stack what a host crash does to an
``everysec`` AOF, or a failover to a replica that lagged a second behind.
"""

from __future__ import annotations

import json
import threading

import redis

from tests.faults.conftest import FaultStack
from worker.keys import result_key
from worker.local.embedded import EmbeddedRedis
from worker.local.sandbox.base import EngineApp


def decided(url: str, job_ids: list[str]) -> int:
    """How many of the jobs have their result in Redis right now."""
    pipe = redis.Redis.from_url(url).pipeline(transaction=False)
    for job_id in job_ids:
        pipe.exists(result_key(job_id))
    return sum(pipe.execute())


def lose_the_next_second(
    server: EmbeddedRedis, app: EngineApp, job_ids: list[str], starts: int = 15
) -> int:
    """Copy the AOF, let the run go on for a second (and at least ``starts`` more
    instances of ``app``), then SIGKILL Redis and restart it from the copy.

    Returns how many results of ``job_ids`` the rewind took back: at least one, or
    the fault did nothing.
    """
    snapshot = server.snapshot()
    at = app.count()
    threading.Event().wait(1.0)  # the lost second is the fault itself, not a wait for an event
    assert app.wait_for_instances(at + starts, timeout=60), "no starts in the lost second"
    before = decided(server.url, job_ids)
    assert server.rewind(snapshot) > 0
    lost = before - decided(server.url, job_ids)
    assert lost > 0, "no result was lost: the rewind tested nothing"
    return lost


def found_after_the_switch(faults: FaultStack) -> list[str]:
    """Instances that jobs coming back after the switch found instead of starting again."""
    found = []
    for log in (faults.workdir / "logs").glob("worker-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if '"job.reconciled"' in line and '"why": "redis_switched"' in line:
                entry = json.loads(line)
                if entry.get("found"):
                    found.append(str(entry["found"]))
    return found
