"""Firing due slots: read the cursor, plan, publish the slot jobs, then move the cursor.

Celery-free, so tests drive it with a frozen clock and a list as the broker;
`worker.schedules.beat` only calls `Firer.tick` from celery beat's loop.

The order is what makes a crash harmless: jobs are published *before* the
cursor moves. A beat that dies in between publishes the same slots again
after a restart, and they are the same jobs (same job id and idempotency
key), which the worker turns into one start. The other order could lose a slot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from worker.producer import prepare
from worker.schedules.schedule import Plan, Schedule, plan
from worker.schedules.state import ScheduleState
from worker.schedules.timing import iso_utc

log = structlog.get_logger("worker.schedules.schedule")

Publish = Callable[[list[dict[str, Any]]], object]
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Firer:
    """Fires the slots of a fixed set of schedules; one per beat process."""

    schedules: Sequence[Schedule]
    state: ScheduleState
    publish: Publish
    clock: Clock = system_clock
    retry_after: float = 2.0
    max_wait: float = 60.0
    _next: dict[str, datetime] = field(default_factory=dict)

    def tick(self) -> float:
        """Fire what is due; return how many seconds beat may sleep before the next slot."""
        now = self.clock()
        for schedule in self.schedules:
            due = self._next.get(schedule.name)
            if due is not None and due > now:
                continue
            try:
                self.fire_due(schedule, now)
            except Exception:
                # Redis or the broker is away, most likely. Beat must keep its other
                # schedules (and celery's own entries) going, and the cursor did not
                # move, so the next try still sees these slots.
                log.exception("schedule.fire_failed", schedule=schedule.name)
                self._next[schedule.name] = now + timedelta(seconds=self.retry_after)
                continue
            self._next[schedule.name] = schedule.next_slots(now, 1)[0]
        if not self._next:
            return self.max_wait
        wait = (min(self._next.values()) - self.clock()).total_seconds()
        # A hair late rather than early: waking a microsecond before the slot
        # would find nothing due and spin once more.
        return min(max(wait + 0.001, 0.0), self.max_wait)

    def fire_due(self, schedule: Schedule, now: datetime) -> Plan:
        """Publish the slots in (cursor, now] that the catch-up policy keeps.

        A schedule paused in Redis (the console) is planned as a disabled one:
        nothing fires and its slots count as decided.
        """
        if self.state.paused(schedule.name):
            schedule = dataclasses.replace(schedule, enabled=False)
        decided = plan(schedule, self.state.cursor(schedule.name), now)
        jobs = [prepare(schedule.job(slot)) for slot in decided.fire]
        if jobs:
            self.publish(jobs)
        self.state.advance(
            schedule.name,
            decided.cursor,
            decided.fire[-1] if decided.fire else None,
            jobs[-1]["job_id"] if jobs else "",
        )
        for slot, job in zip(decided.fire, jobs, strict=True):
            log.info(
                "schedule.fired",
                schedule=schedule.name,
                slot=iso_utc(slot),
                job_id=job["job_id"],
                late_seconds=round((now - slot).total_seconds(), 3),
            )
        if decided.skipped:
            log.warning(
                "schedule.missed_slots_skipped",
                schedule=schedule.name,
                skipped=decided.skipped,
                catch_up=schedule.catch_up,
            )
        return decided
