"""``startproc schedules list | check | run``: inspect the schedules file, fire a slot by hand."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from worker.cli.common import (
    WAIT_HELP,
    JsonOption,
    WaitCommand,
    console,
    current_settings,
    emit_json,
    fail,
    need_producer,
    plain,
    redact,
    result_exit_code,
    results_table,
)

if TYPE_CHECKING:
    from worker.schedules.schedule import Schedule

schedules_app = typer.Typer(
    help="Scheduled starts (STARTPROC_SCHEDULES): list, check, run one slot.",
    no_args_is_help=True,
)
FileOption = typer.Option(
    None, "--file", metavar="FILE", help="Schedules file (default STARTPROC_SCHEDULES)."
)


def _load(path: Path | None, with_targets: bool = False) -> tuple[Path, list[Schedule]]:
    """The schedules file; ``with_targets``: each schedule's target must be in the targets file
    (whose ``${VAR}``s need not be set here)."""
    from worker.schedules.schedule import load_schedules

    cfg = current_settings()
    path = path or cfg.schedules
    names = None
    if with_targets:
        from worker.targets import Targets

        names = Targets.load(cfg.targets, need=()).names()
    return path, load_schedules(path, names)


def _find(schedules: list[Schedule], name: str) -> Schedule:
    from worker.validation import did_you_mean

    for schedule in schedules:
        if schedule.name == name:
            return schedule
    fail(f"unknown schedule {name!r}{did_you_mean(name, [s.name for s in schedules])}")


def _last_results(names: list[str]) -> dict[str, dict[str, Any]] | str:
    """Each schedule's newest started slot and its result, or why they cannot be read."""
    import redis

    from worker import keys
    from worker.models import Result
    from worker.schedules.state import ScheduleState
    from worker.schedules.timing import iso_utc

    url = current_settings().effective_redis_url()
    if not url:
        return "no STARTPROC_REDIS_URL"
    from worker.broker.connections import redis_client

    client = redis_client(url, probe=True)
    try:
        state = ScheduleState(client)
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            last = state.last_fired(name)
            if last is None:
                continue
            raw = client.get(keys.result_key(last.job_id))
            result = Result.model_validate_json(str(raw)) if raw else None
            out[name] = {
                "slot": iso_utc(last.slot),
                "job_id": last.job_id,
                "status": result.status if result else "pending",
                "instance_id": result.instance_id if result else None,
            }
        return out
    except redis.RedisError as exc:
        return f"Redis unavailable at {redact(url)}: {exc}"
    finally:
        client.close()


def _row(schedule: Schedule, now: datetime, count: int) -> dict[str, Any]:
    from worker.schedules.timing import iso_utc

    return {
        "name": schedule.name,
        "enabled": schedule.enabled,
        "target": schedule.target,
        "process": schedule.process,
        "when": schedule.timing.describe(),
        "timezone": schedule.zone.key,
        "catch_up": schedule.catch_up,
        "next": [
            {"local": slot.astimezone(schedule.zone).isoformat(), "utc": iso_utc(slot)}
            for slot in schedule.next_slots(now, count)
        ],
    }


def _short(slot: datetime, schedule: Schedule) -> str:
    """``2026-03-29 03:00 CEST = 01:00Z`` (seconds only when the slot has them)."""
    clock = "%H:%M:%S" if slot.second else "%H:%M"
    there = slot.astimezone(schedule.zone)
    return f"{there:%Y-%m-%d} {there.strftime(clock)} {there.tzname()} = {slot.strftime(clock)}Z"


@schedules_app.command("list")
def schedules_list(
    path: Path | None = FileOption,
    count: int = typer.Option(
        3, "--count", "-n", min=1, max=100, metavar="N", help="Fire times to show."
    ),
    state: bool = typer.Option(True, "--state/--no-state", help="Show each last result."),
    as_json: bool = JsonOption,
) -> None:
    """Each schedule with its next fire times (its zone and UTC) and its last result."""
    path, schedules = _load(path)
    now = datetime.now(UTC)
    rows = [_row(s, now, count) for s in schedules]
    last = _last_results([s.name for s in schedules]) if state else {}
    for row in rows:
        row["last"] = last.get(row["name"]) if isinstance(last, dict) else None
    if as_json:
        emit_json(rows)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=plain(f"schedules ({path})"))
    table.add_column("schedule", overflow="fold")
    table.add_column("target", no_wrap=True)
    table.add_column("next (its zone = UTC)", no_wrap=True)
    table.add_column("last started", overflow="fold")
    for row, schedule in zip(rows, schedules, strict=True):
        off = "" if row["enabled"] else " [yellow](disabled)[/]"
        done = row["last"]
        e = escape
        table.add_row(
            f"[bold]{e(row['name'])}[/]{off}\n[dim]{e(row['when'])}\n"
            f"catch_up {e(row['catch_up'])}[/]",
            plain(row["target"]),
            plain("\n".join(_short(s, schedule) for s in schedule.next_slots(now, count))),
            plain(f"{done['slot']}\n{done['status']}" if done else ""),
        )
    console.print(table)
    if isinstance(last, str):
        console.print(f"[yellow]last results not shown:[/] {escape(last)}")


@schedules_app.command("check")
def schedules_check(path: Path | None = FileOption, as_json: bool = JsonOption) -> None:
    """Validate the schedules file, including that every target is in the targets file."""
    path, schedules = _load(path, with_targets=True)
    summary = {"file": str(path), "schedules": len(schedules), "status": "ok"}
    if as_json:
        emit_json(summary)
    else:
        console.print(plain(f"{path}: {len(schedules)} schedules, ok"))


def _slot(schedule: Schedule, at: str | None) -> datetime:
    from worker.schedules.timing import iso_utc, resolve

    if at is None:
        return schedule.latest_slot(datetime.now(UTC))
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        fail(f"--at {at!r}: not an ISO-8601 time (e.g. 2026-11-25T06:00 or 2026-11-25T05:00Z)")
    moment = resolve(moment, schedule.zone) if moment.tzinfo is None else moment.astimezone(UTC)
    if not schedule.is_slot(moment):
        before = iso_utc(schedule.latest_slot(moment))
        after = iso_utc(schedule.next_slots(moment, 1)[0])
        fail(f"--at {at}: not a slot of {schedule.name!r} (nearest: {before}, {after})")
    return moment


@schedules_app.command("run", cls=WaitCommand)
def schedules_run(
    name: str = typer.Argument(..., metavar="NAME", help="Schedule name."),
    at: str | None = typer.Option(
        None,
        "--at",
        metavar="TIME",
        help="Slot to fire, ISO-8601 (no offset = the schedule's zone). Default: the latest slot.",
    ),
    wait: float | None = typer.Option(None, "--wait", min=0, metavar="[SECONDS]", help=WAIT_HELP),
    path: Path | None = FileOption,
    as_json: bool = JsonOption,
) -> None:
    """Fire one slot now, with the slot's idempotency key: a slot already started is a duplicate.

    The job gets a fresh job id (beat's copies share one derived id), so its
    result says ``duplicate`` when the slot had already started an instance.
    """
    from worker import producer
    from worker.schedules.schedule import slot_key
    from worker.schedules.timing import iso_utc

    _, schedules = _load(path, with_targets=True)
    schedule = _find(schedules, name)
    slot = _slot(schedule, at)
    job = producer.prepare(schedule.job(slot, job_id=str(uuid.uuid4())))
    cfg = current_settings()
    if wait is not None:
        cfg.require_redis()  # waiting reads the results index: say so before sending
    producer.publish([job], need_producer(cfg))
    sent = {"job_id": job["job_id"], "slot": iso_utc(slot), "idempotency_key": slot_key(name, slot)}
    if wait is None:
        if as_json:
            emit_json(sent)
        else:
            console.print(plain(f"{sent['job_id']}  slot {sent['slot']}"))
        return
    result = producer.wait(job["job_id"], wait)
    if as_json:
        emit_json(result.model_dump(mode="json") if result else {**sent, "status": "pending"})
    elif result is None:
        console.print(plain(f"{sent['job_id']}: no result yet (pending)"))
    else:
        console.print(results_table([result]))
    raise typer.Exit(result_exit_code(result))
