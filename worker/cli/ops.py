"""Operating the service: targets, the dead-letter store, sandboxes."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import typer
from rich.table import Table

from worker.cli.common import (
    EXIT_FAILED,
    JsonOption,
    console,
    current_settings,
    emit_json,
    fail,
)
from worker.config import Targets
from worker.dlq import DeadLetters
from worker.errors import ConfigError

targets_app = typer.Typer(help="Inspect the configured targets.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="Jobs that need a person: list, show, replay, purge.", no_args_is_help=True
)


def _targets(path: Path | None) -> Targets:
    try:
        return Targets.load(path or current_settings().targets)
    except ConfigError as exc:
        fail(str(exc))


@targets_app.command("list")
def targets_list(
    path: Path | None = typer.Option(
        None, "--file", help="Targets file (default STARTPROC_TARGETS)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """List targets (secrets are never shown)."""
    targets = _targets(path)
    rows = [
        {
            "name": t.name,
            "engine": getattr(t, "engine", ""),
            "base_url": t.base_url,
            "auth": t.auth.type,
            "timeout": t.timeout,
            "rate_limit": t.rate_limit,
        }
        for t in targets.values()
    ]
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"targets ({targets.path})")
    for column in ("name", "engine", "base_url", "auth", "timeout", "rate_limit"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c] or "") for c in row))
    console.print(table)


@targets_app.command("check")
def targets_check(
    name: str | None = typer.Argument(None, help="One target (default: all)."),
    path: Path | None = typer.Option(None, "--file"),
    as_json: bool = JsonOption,
) -> None:
    """Validate the targets file, obtain a token (OAuth2) and make a harmless read."""
    from worker.auth import OAuth2
    from worker.engines import build_engine
    from worker.errors import JobError

    targets = _targets(path)
    names = [name] if name else list(targets)
    rows = []
    for target_name in names:
        if target_name not in targets:
            fail(f"unknown target {target_name!r}{targets.suggest(target_name)}")
        engine = build_engine(targets[target_name])
        status, steps = "ok", ["config valid"]
        try:
            if isinstance(engine.credentials, OAuth2):
                engine.credentials.token()
                steps.append("token obtained")
            probe = engine.probe_request()
            if probe is not None:
                engine.fetch(probe)
                steps.append(f"{probe.method} {probe.path} answered")
            else:
                steps.append("engine not contacted (no harmless read documented)")
        except JobError as exc:
            status = "fail"
            steps.append(exc.message)
        reason = "; ".join(steps)
        rows.append({"target": target_name, "status": status, "reason": reason})
    if as_json:
        emit_json(rows)
    else:
        table = Table(title="target check")
        for column in ("target", "status", "reason"):
            table.add_column(column)
        for row in rows:
            colour = "green" if row["status"] == "ok" else "red"
            table.add_row(row["target"], f"[{colour}]{row['status']}[/]", row["reason"])
        console.print(table)
    if any(r["status"] != "ok" for r in rows):
        raise typer.Exit(EXIT_FAILED)


def _dead_letters() -> DeadLetters:
    from worker.connections import shared_redis

    try:
        return DeadLetters(shared_redis(current_settings().require_redis()))
    except ConfigError as exc:
        fail(str(exc))


@dlq_app.command("list")
def dlq_list(limit: int = typer.Option(100, "--limit"), as_json: bool = JsonOption) -> None:
    """Dead-lettered jobs, oldest first."""
    entries = _dead_letters().list(limit)
    if as_json:
        emit_json(entries)
        return
    table = Table(title=f"dead letters ({len(entries)})")
    for column in ("job_id", "target", "reason", "message"):
        table.add_column(column, overflow="fold")
    for e in entries:
        job = e.get("job") or {}
        table.add_row(
            e["job_id"],
            str(job.get("target", "")),
            e["reason"],
            str((e.get("error") or {}).get("message", "")),
        )
    console.print(table)


@dlq_app.command("show")
def dlq_show(job_id: str, as_json: bool = JsonOption) -> None:
    """One dead-lettered job with its error."""
    entry = _dead_letters().get(job_id)
    if entry is None:
        fail(f"no dead letter {job_id!r}", EXIT_FAILED)
    emit_json(entry) if as_json else console.print_json(data=entry)


@dlq_app.command("replay")
def dlq_replay(job_id: str, as_json: bool = JsonOption) -> None:
    """Enqueue the job again as a new job with the same idempotency key."""
    from worker import producer
    from worker.keys import idempotency_key

    dlq = _dead_letters()
    entry = dlq.get(job_id)
    if entry is None:
        fail(f"no dead letter {job_id!r}", EXIT_FAILED)
    job = dict(entry["job"])
    job["idempotency_key"] = idempotency_key(
        target=job["target"],
        process=str(job["process"]),
        explicit=job.get("idempotency_key"),
        business_key=job.get("business_key"),
        job_id=job_id,
    )
    for field in ("job_id", "enqueued_at"):
        job.pop(field, None)
    new_id = producer.enqueue(job)
    dlq.remove(job_id)
    emit_json({"replayed": job_id, "job_id": new_id}) if as_json else console.print(new_id)


@dlq_app.command("purge")
def dlq_purge(
    yes: bool = typer.Option(False, "--yes", help="Do not ask."), as_json: bool = JsonOption
) -> None:
    """Delete every dead letter."""
    if not yes and not typer.confirm("Delete all dead letters?"):
        raise typer.Exit(EXIT_FAILED)
    count = _dead_letters().purge()
    emit_json({"purged": count}) if as_json else console.print(f"purged {count}")


def sandbox(
    engine: str = typer.Argument(
        ..., help="camunda8 | camunda7 | processmaker4 | blueworks | tas | all"
    ),
    port: int = typer.Option(8088, "--port", help="Port (0 = any free port)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    camunda7_as: str = typer.Option(
        "camunda7", "--camunda7-as", help="Serve Camunda 7 as: camunda7 | operaton | cibseven."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Run an engine emulator until Ctrl-C (for local development and demos)."""
    from worker.sandbox import ENGINE_NAMES, SandboxServer
    from worker.validation import did_you_mean

    if engine != "all" and engine not in ENGINE_NAMES:
        fail(f"unknown engine {engine!r}{did_you_mean(engine, ENGINE_NAMES)}")
    try:
        server = SandboxServer(
            engines=engine, host=host, port=port, camunda7_product=camunda7_as
        ).start()
    except ValueError as exc:
        fail(str(exc))
    names = list(ENGINE_NAMES) if engine == "all" else [engine]
    urls = {name: server.base_url(name) for name in names}
    if as_json:
        emit_json({"url": server.url, "base_urls": urls})
    else:
        for name, url in urls.items():
            console.print(f"{name:14} base_url = {url}")
        console.print("Ctrl-C to stop")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        time.sleep(0)
