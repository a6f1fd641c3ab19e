"""``startproc health beat``: a container health check for celery beat.

Beat has no remote control to ping (workers answer ``celery -A worker
inspect ping``). Our scheduler (`worker.schedules.beat.Scheduler`) touches
``<beat -s file>.heartbeat`` on every tick instead, at least once per
``STARTPROC_SWEEP_INTERVAL``; this command checks that the file is fresh.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from worker.cli.common import EXIT_FAILED, JsonOption, console, emit_json, fail, plain

health_app = typer.Typer(
    help="Health checks for containers and supervisors (exit 0 healthy, 1 not).",
    no_args_is_help=True,
)


@health_app.command("beat")
def beat(
    schedule: Path = typer.Option(
        Path("celerybeat-schedule"),
        "--schedule",
        "-s",
        metavar="FILE",
        help="The file beat was given with -s/--schedule (its heartbeat is FILE.heartbeat).",
    ),
    max_age: float | None = typer.Option(
        None,
        "--max-age",
        min=1,
        metavar="SECONDS",
        help="Oldest acceptable heartbeat (default: 3 x STARTPROC_SWEEP_INTERVAL, at least 60).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Exit 0 if beat ticked recently (its heartbeat file is fresh), else 1 saying why."""
    from worker.config import settings
    from worker.schedules.beat import heartbeat_path

    limit = max_age if max_age is not None else max(60.0, 3 * settings().sweep_interval)
    path = heartbeat_path(str(schedule))
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        fail(f"{path}: no heartbeat (is beat running with -s {schedule}?)", EXIT_FAILED)
    healthy = age <= limit
    if as_json:
        emit_json({"healthy": healthy, "heartbeat": str(path), "age": round(age, 1)})
    elif healthy:
        console.print(plain(f"beat ticked {age:.0f} s ago ({path})"))
    if not healthy:
        if not as_json:
            fail(f"beat last ticked {age:.0f} s ago (limit {limit:g} s; {path})", EXIT_FAILED)
        raise typer.Exit(EXIT_FAILED)
