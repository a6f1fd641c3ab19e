"""Schedules: next slots in each schedule's own zone, the last fired slot and its result,
run now, pause and resume.

"Run now" is ``startproc schedules run NAME``: the latest slot, with that
slot's idempotency key and a fresh job id, so a slot that already started
an instance is answered ``duplicate``. Pause and resume write the pause to
the schedule's state in Redis (`worker.schedules.state`), which beat reads
before firing: a paused schedule fires nothing, and its slots count as
decided, so resuming does not catch up the paused time.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from worker import producer
from worker.console.context import Console, Operator, SignedIn, console_of
from worker.console.render import page
from worker.errors import ConfigError
from worker.models import Result
from worker.schedules.schedule import Schedule, load_schedules, slot_key
from worker.schedules.state import ScheduleState
from worker.schedules.timing import iso_utc

router = APIRouter()

NEXT_SLOTS = 3
LOCAL = "%Y-%m-%d %H:%M %Z"  # a slot on the schedule's own wall clock
ACTIONS = {
    "run": (
        "Run now",
        "Start the latest slot now, with that slot's idempotency key: if it already started "
        "an instance, the new job is answered duplicate.",
    ),
    "pause": (
        "Pause",
        "Beat fires nothing for this schedule until it is resumed. Slots that pass while "
        "it is paused are skipped for good, not caught up.",
    ),
    "resume": ("Resume", "Beat fires this schedule's slots again from the next one on."),
}


@dataclass
class ScheduleRow:
    schedule: Schedule
    next_slots: list[tuple[str, str]]
    paused: dict[str, str] | None
    last_slot: str | None
    last_job_id: str | None
    last_result: Result | None


def load(console: Console) -> list[Schedule]:
    """The schedules file; none when it is missing at the default path (as beat does)."""
    cfg = console.settings
    if not cfg.schedules.exists() and "schedules" not in cfg.model_fields_set:
        return []
    return load_schedules(cfg.schedules)


def _find(console: Console, name: str) -> Schedule:
    for schedule in load(console):
        if schedule.name == name:
            return schedule
    raise HTTPException(404, "No such schedule")


def rows(console: Console) -> list[ScheduleRow]:
    now = datetime.now(UTC)
    state = ScheduleState(console.client())
    found = []
    for schedule in load(console):
        slots = [
            (slot.astimezone(schedule.zone).strftime(LOCAL), iso_utc(slot))
            for slot in schedule.next_slots(now, NEXT_SLOTS)
        ]
        last = state.last_fired(schedule.name)
        result = console.intake.store.get(last.job_id) if last else None
        shown = last.slot.astimezone(schedule.zone).strftime(LOCAL) if last else None
        found.append(
            ScheduleRow(
                schedule,
                slots,
                state.pause_info(schedule.name),
                shown,
                last.job_id if last else None,
                result,
            )
        )
    return found


@router.get("/schedules")
async def schedules(request: Request, _s: SignedIn, done: str = "") -> Response:
    console = console_of(request)
    try:
        found, problem = await run_in_threadpool(rows, console), None
    except ConfigError as exc:
        found, problem = [], str(exc)
    return page(
        request,
        "schedules.html",
        nav="schedules",
        rows=found,
        problem=problem,
        path=str(console.settings.schedules),
        done=done[:300],
    )


@router.get("/schedules/{name}/{action}")
async def confirm(request: Request, _s: SignedIn, name: str, action: str) -> Response:
    if action not in ACTIONS:
        raise HTTPException(404, "No such action")
    schedule = await run_in_threadpool(_find, console_of(request), name)
    return page(
        request,
        "confirm_schedule.html",
        nav="schedules",
        schedule=schedule,
        action=action,
        title=ACTIONS[action][0],
        explain=ACTIONS[action][1],
    )


def _act(console: Console, name: str, action: str, by: str) -> str:
    schedule = _find(console, name)
    state = ScheduleState(console.client())
    if action == "pause":
        state.pause(name, by=by, at=time.time())
        return f"paused {name}"
    if action == "resume":
        state.resume(name)
        return f"resumed {name}"
    slot = schedule.latest_slot(datetime.now(UTC))
    job: dict[str, Any] = producer.prepare(schedule.job(slot, job_id=str(uuid.uuid4())))
    producer.publish([job], console.settings.require_broker())
    state.note_fired(name, slot, job["job_id"])
    return f"ran {name}: slot {iso_utc(slot)} ({slot_key(name, slot)}) as job {job['job_id']}"


@router.post("/schedules/{name}/{action}")
async def act(request: Request, session: Operator, name: str, action: str) -> Response:
    if action not in ACTIONS:
        raise HTTPException(404, "No such action")
    assert session.user is not None
    done = await run_in_threadpool(_act, console_of(request), name, action, session.user.name)
    root = request.scope.get("root_path", "")
    return RedirectResponse(f"{root}/schedules?done={quote(done)}", status_code=303)
