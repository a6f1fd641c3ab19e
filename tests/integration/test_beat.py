"""Real ``celery beat`` processes firing an ``every = "1s"`` schedule into a real worker.

The verdict comes from the sandbox, not from beat: every slot beat published
must be exactly one Camunda 8 instance whose ``slot`` variable is that slot,
while two beats run at once, after one stops, and across a restart. Waits are
on events (instance counts, results) with deadlines; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from tests.integration.conftest import Pipeline, module_pipeline
from tests.support.waiting import wait_until
from worker.config import settings
from worker.local import demo
from worker.local.sandbox import SandboxServer
from worker.local.stack import LocalStack
from worker.producer import prepare, publish
from worker.runtime import result_store
from worker.schedules.schedule import load_schedules, slot_job_id, slot_key
from worker.schedules.timing import iso_utc

pytestmark = pytest.mark.integration

SCHEDULES = """
[schedules.tick]
every = "1s"
target = "orders"
process = "order-process"
catch_up = "all"          # slots missed during the restart are started late, not lost
catch_up_limit = 100
[schedules.tick.variables]
slot = "{{ scheduled_at }}"
"""


@dataclass
class Beats:
    """Beat processes of one test, with their own logs, stopped when the test ends."""

    stack: LocalStack
    sandbox: SandboxServer
    env: dict[str, str]
    log_dir: Path

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.log_dir.glob("*.log")))

    def fired(self) -> list[str]:
        """Slots that this test's beats published, one entry per publish (from their logs)."""
        return [
            json.loads(line)["slot"]
            for line in self.logs().splitlines()
            if '"schedule.fired"' in line
        ]


def beat_env(workdir: Path) -> dict[str, str]:
    """The schedules file (written to ``workdir``) and JSON logs, which `Beats.fired` reads."""
    schedules = workdir / "schedules.toml"
    schedules.write_text(SCHEDULES, encoding="utf-8")
    return {"STARTPROC_SCHEDULES": str(schedules), "STARTPROC_LOG_FORMAT": "json"}


# The shared pipeline (one worker start-up for all tests), with the schedules and JSON logs.
pipeline = module_pipeline("beat", beat_env)


@pytest.fixture
def beats(
    pipeline: Pipeline, sandbox: SandboxServer, redis_url: str, tmp_path: Path
) -> Iterator[Beats]:
    demo.configure_sandbox(sandbox)
    stack = LocalStack(broker_url=redis_url, env=pipeline.env, log_dir=tmp_path / "logs")
    try:
        yield Beats(stack, sandbox, pipeline.env, tmp_path / "logs")
    finally:
        stack.stop()


def test_two_beats_and_a_restart_start_every_slot_exactly_once(beats: Beats) -> None:
    c8 = beats.sandbox.app("camunda8")
    stack = beats.stack

    first, second = stack.start_beat(), stack.start_beat()  # two beats by mistake
    assert c8.wait_for_instances(4, timeout=25), beats.logs()
    stack.stop_process(first)
    assert c8.wait_for_instances(c8.count() + 2, timeout=10), beats.logs()
    stack.stop_process(second)  # now no beat runs: slots are missed until the restart
    restarted = stack.start_beat()
    seen = c8.count()
    assert c8.wait_for_instances(seen + 4, timeout=25), beats.logs()
    stack.stop_process(restarted)

    published = beats.fired()
    slots = sorted(set(published))
    start = datetime.fromisoformat(slots[0])
    every_second = [iso_utc(start + timedelta(seconds=i)) for i in range(len(slots))]
    assert slots == every_second, "catch_up = 'all' leaves no slot out, even across the restart"

    store = result_store(settings())
    deadline = time.monotonic() + 30
    results = [
        store.wait(
            slot_job_id(slot_key("tick", datetime.fromisoformat(s))), deadline - time.monotonic()
        )
        for s in slots
    ]
    assert all(r is not None and r.status == "created" for r in results), results
    assert all(r is not None and r.schedule == "tick" for r in results)
    instances = c8.instances
    assert sorted(i["variables"]["slot"] for i in instances) == slots  # one instance per slot
    assert len({r.instance_id for r in results if r}) == len(slots)
    print(f"{len(slots)} slots, {len(published) - len(slots)} published twice by two beats")


def test_a_redelivered_or_hand_fired_slot_starts_nothing_new(beats: Beats) -> None:
    c8 = beats.sandbox.app("camunda8")
    beat = beats.stack.start_beat()
    assert c8.wait_for_instances(3, timeout=25), beats.logs()
    beats.stack.stop_process(beat)
    store = result_store(settings())
    slots = sorted(set(beats.fired()))
    (schedule,) = load_schedules(Path(beats.env["STARTPROC_SCHEDULES"]))
    fired = [datetime.fromisoformat(s) for s in slots]
    results = {s: store.wait(slot_job_id(slot_key("tick", s)), 20) for s in fired}
    assert all(r is not None and r.status == "created" for r in results.values())
    count = c8.count()

    # The same messages again (a redelivery, a beat that crashed before moving its cursor).
    publish([prepare(schedule.job(s)) for s in fired])
    client = redis.Redis.from_url(beats.env["STARTPROC_REDIS_URL"])
    jobs_queue = settings().jobs_queue
    wait_until(
        lambda: client.llen(jobs_queue) == 0 and client.hlen("unacked") == 0,
        timeout=20,
        what="the worker to take the copies",
    )
    # By hand, with the slot's key: the ledger answers duplicate with the first instance.
    from worker.cli.app import app

    out = CliRunner().invoke(
        app, ["schedules", "run", "tick", "--at", iso_utc(fired[0]), "--wait", "20", "--json"]
    )
    assert out.exit_code == 0, out.output
    by_hand, original = json.loads(out.stdout), results[fired[0]]
    assert original is not None and by_hand["status"] == "duplicate"
    assert by_hand["instance_id"] == original.instance_id
    assert c8.count() == count == len(fired)
    for slot, result in results.items():
        assert store.get(slot_job_id(slot_key("tick", slot))) == result


def test_beat_refuses_a_bad_schedules_file_naming_file_schedule_and_key(
    beats: Beats, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[schedules.tick]\nevery = "1s"\ntarget = "ordrs"\nprocess = "p"\ncatch_up = "al"\n',
        encoding="utf-8",
    )
    env = {**beats.env, "STARTPROC_SCHEDULES": str(bad)}
    with LocalStack(broker_url=beats.stack.broker_url, env=env, log_dir=beats.log_dir) as stack:
        assert stack.start_beat().wait(timeout=30) != 0
    output = beats.logs()
    assert f"{bad}: schedules.tick.target: 'ordrs' is not in the targets file" in output
    assert "(did you mean 'orders'?)" in output
    assert f"{bad}: schedules.tick.catch_up: 'al' (did you mean 'all'?)" in output
