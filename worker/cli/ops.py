"""Operating the service: targets, the dead-letter store, sandboxes."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.text import Text

from worker.cli.common import (
    EXIT_FAILED,
    JsonOption,
    console,
    current_settings,
    emit_json,
    err_console,
    fail,
    iso_time,
    need_redis,
    plain,
)

if TYPE_CHECKING:
    from worker.delivery.dlq import DeadLetters
    from worker.delivery.ledger import Ledger
    from worker.targets import Targets

targets_app = typer.Typer(help="Inspect the configured targets.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="Jobs that need a person: list, show, replay, resolve, delete, purge.",
    no_args_is_help=True,
)


def _targets(path: Path | None) -> Targets:
    """The whole file, validated; ``${VAR}``s need not be set (`Targets.unresolved`)."""
    from worker.targets import Targets

    return Targets.load(path or current_settings().targets, need=())


def _raw_target(targets: Targets, name: str) -> dict[str, Any]:
    """A target's table as written (for one whose ``${VAR}``s are not set)."""
    import tomllib

    assert targets.path is not None
    table = tomllib.loads(targets.path.read_text(encoding="utf-8"))["targets"][name]
    return dict(table)


@targets_app.command("list")
def targets_list(
    path: Path | None = typer.Option(
        None, "--file", metavar="FILE", help="Targets file (default STARTPROC_TARGETS)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """List targets (secrets are never shown; ${VAR}s that are not set are named)."""
    targets = _targets(path)
    rows: list[dict[str, Any]] = []
    for name in targets.names():
        row: dict[str, Any] = {"name": name}
        if name in targets:
            t = targets[name]
            row.update(
                engine=getattr(t, "engine", ""),
                base_url=t.base_url,
                auth=t.auth.type,
                timeout=t.timeout,
                rate_limit=t.rate_limit,
            )
        else:  # valid, but a ${VAR} is not set: shown as written
            raw = _raw_target(targets, name)
            auth_table = raw.get("auth")
            row.update(
                engine=raw.get("engine"),
                base_url=raw.get("base_url"),
                auth=auth_table.get("type", "none") if isinstance(auth_table, dict) else "none",
                timeout=raw.get("timeout", 10.0),
                rate_limit=raw.get("rate_limit"),
            )
        row["unresolved"] = [p.split(": ", 1)[1] for p in targets.unresolved.get(name, [])]
        rows.append(row)
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table(title=plain(f"targets ({targets.path})"))
    for column in ("name", "engine", "base_url", "auth", "timeout", "rate_limit", "unresolved"):
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = [plain(row[c] or "") for c in row if c != "unresolved"]
        table.add_row(*cells, Text("; ".join(row["unresolved"]), style="yellow"))
    console.print(table)


@targets_app.command("check")
def targets_check(
    name: str | None = typer.Argument(None, metavar="NAME", help="One target (default: all)."),
    path: Path | None = typer.Option(
        None, "--file", metavar="FILE", help="Targets file (default STARTPROC_TARGETS)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Validate the targets file and each ${VAR}, obtain a token (OAuth2), make a harmless read.

    Status per target: ok (the engine answered), not contacted (valid, but the
    engine has no documented harmless read), fail. Exit 1 if any failed.
    """
    from worker.engines import build_engine
    from worker.engines.auth import OAuth2
    from worker.errors import ConfigError, JobError

    targets = _targets(path)
    if name and not targets.declares(name):
        fail(str(targets.unknown(name)))
    names = [name] if name else targets.names()
    rows = []
    for target_name in names:
        steps = ["config valid"]
        try:
            engine = build_engine(targets.require(target_name))
        except ConfigError as exc:
            problems = [line.split(": ", 2)[-1] for line in str(exc).splitlines()]
            rows.append({"target": target_name, "status": "fail", "reason": "; ".join(problems)})
            continue
        status = "ok"
        try:
            if isinstance(engine.credentials, OAuth2):
                engine.credentials.token()
                steps.append("token obtained")
            probe = engine.probe_request()
            if probe is not None:
                engine.fetch(probe)
                steps.append(f"{probe.method} {probe.path} answered")
            else:
                status = "not contacted"
                steps.append("engine not contacted (it has no documented harmless read)")
        except JobError as exc:
            status = "fail"
            steps.append(exc.message)
        rows.append({"target": target_name, "status": status, "reason": "; ".join(steps)})
    if as_json:
        emit_json(rows)
    else:
        from rich.table import Table

        table = Table(title="target check")
        for column in ("target", "status", "reason"):
            table.add_column(column, overflow="fold")
        colours = {"ok": "green", "not contacted": "yellow", "fail": "red"}
        for row in rows:
            status_cell = Text(row["status"], style=colours[row["status"]])
            table.add_row(plain(row["target"]), status_cell, plain(row["reason"]))
        console.print(table)
    if any(r["status"] == "fail" for r in rows):
        raise typer.Exit(EXIT_FAILED)


def _dead_letters() -> DeadLetters:
    from worker.broker.connections import shared_redis
    from worker.delivery.dlq import DeadLetters

    return DeadLetters(shared_redis(need_redis(current_settings())))


def _shown(entry: dict[str, Any]) -> dict[str, Any]:
    """A dead letter as printed: its time in ISO-8601 UTC, like every other timestamp."""
    at = entry.get("at")
    return {**entry, "at": iso_time(at) if isinstance(at, int | float) else at}


@dlq_app.command("list")
def dlq_list(
    limit: int = typer.Option(100, "--limit", min=1, metavar="N", help="At most N entries."),
    as_json: bool = JsonOption,
) -> None:
    """Dead-lettered jobs, oldest first."""
    entries = [_shown(e) for e in _dead_letters().list(limit)]
    if as_json:
        emit_json(entries)
        return
    from rich.table import Table

    table = Table(title=f"dead letters ({len(entries)})")
    for column in ("job_id", "at", "target", "reason", "message"):
        table.add_column(column, overflow="fold")
    for e in entries:
        job = e.get("job") or {}
        table.add_row(
            plain(e["job_id"]),
            plain(e.get("at")),
            plain(job.get("target", "") if isinstance(job, dict) else ""),
            plain(e["reason"]),
            plain((e.get("error") or {}).get("message", "")),
        )
    console.print(table)


@dlq_app.command("show")
def dlq_show(
    job_id: str = typer.Argument(..., metavar="JOB_ID", help="Job id of the dead letter."),
    as_json: bool = JsonOption,
) -> None:
    """One dead-lettered job with its error."""
    entry = _dead_letters().get(job_id)
    if entry is None:
        fail(f"no dead letter {job_id!r} (startproc dlq list shows them)", EXIT_FAILED)
    emit_json(_shown(entry)) if as_json else console.print_json(data=_shown(entry))


def _settle_tools() -> tuple[Ledger, Targets]:
    """The ledger and the targets a settling command needs (exit 2 on bad configuration)."""
    from worker.broker.connections import shared_redis
    from worker.delivery.ledger import Ledger
    from worker.targets import load_targets

    cfg = current_settings()
    client = shared_redis(cfg.require_redis())
    return Ledger(client, cfg.lease_seconds, cfg.retention_days), load_targets(cfg.targets)


@dlq_app.command("replay")
def dlq_replay(
    job_id: str = typer.Argument(..., metavar="JOB_ID", help="Job id of the dead letter."),
    as_json: bool = JsonOption,
) -> None:
    """Enqueue the job again as a new job with the same idempotency key.

    It looks the instance up before sending when the engine can be searched;
    on one that cannot (Blueworks, TAS), an instance that may exist must be
    settled first with `dlq resolve`.
    """
    from worker import producer
    from worker.delivery import settle
    from worker.errors import SettleError

    ledger, targets = _settle_tools()
    try:
        done = settle.replay(_dead_letters(), ledger, targets, producer.enqueue, job_id)
    except SettleError as exc:
        fail(str(exc), EXIT_FAILED)
    if as_json:
        emit_json({"replayed": job_id, "job_id": done.new_job_id, "ledger": done.ledger})
    else:
        console.print(plain(done.new_job_id))
        err_console.print(plain(f"replayed {job_id}: {done.note}"))


@dlq_app.command("resolve")
def dlq_resolve(
    job_id: str = typer.Argument(..., metavar="JOB_ID", help="Job id of the dead letter."),
    created: str | None = typer.Option(
        None,
        "--created",
        metavar="INSTANCE_ID",
        help="The engine has the instance (you checked): record it and settle the dead letter.",
    ),
    not_created: bool = typer.Option(
        False, "--not-created", help="The engine has no instance (you checked): replay sends."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Settle a dead letter checked by hand in the engine (Blueworks and TAS cannot be searched).

    --created records the instance as the key's success and publishes the job's
    one result as created, if the job never had one; --not-created lets the
    next `dlq replay` send.
    """
    from worker.delivery import settle
    from worker.errors import SettleError
    from worker.runtime import result_store

    if (created is None) == (not not_created):
        fail("give exactly one of --created INSTANCE_ID and --not-created")
    try:
        if created is not None:
            ledger, targets = _settle_tools()
            results = result_store(current_settings())
            done = settle.resolve_created(
                _dead_letters(), ledger, results, targets, job_id, created
            )
        else:
            done = settle.resolve_not_created(_dead_letters(), job_id)
    except SettleError as exc:
        fail(str(exc), EXIT_FAILED)
    if as_json:
        emit_json(done.__dict__)
    elif done.resolution == "created":
        published = (
            "its created result was published"
            if done.result_published
            else "it already had a result, which stays"
        )
        console.print(plain(f"{job_id}: created as instance {done.instance_id}; {published}"))
    else:
        console.print(
            plain(f"{job_id}: not created; `startproc dlq replay {job_id}` sends it again")
        )


@dlq_app.command("delete")
def dlq_delete(
    job_id: str = typer.Argument(..., metavar="JOB_ID", help="Job id of the dead letter."),
    as_json: bool = JsonOption,
) -> None:
    """Delete one dead letter (nothing is started or published)."""
    if not _dead_letters().remove(job_id):
        fail(f"no dead letter {job_id!r} (startproc dlq list shows them)", EXIT_FAILED)
    emit_json({"deleted": job_id}) if as_json else console.print(plain(f"deleted {job_id}"))


@dlq_app.command("purge")
def dlq_purge(
    yes: bool = typer.Option(False, "--yes", help="Do not ask."), as_json: bool = JsonOption
) -> None:
    """Delete every dead letter."""
    dlq = _dead_letters()
    if not yes and not typer.confirm("Delete all dead letters?"):
        raise typer.Exit(EXIT_FAILED)
    count = dlq.purge()
    emit_json({"purged": count}) if as_json else console.print(f"purged {count}")


def sandbox(
    engine: str = typer.Argument(
        ..., metavar="ENGINE", help="camunda8 | camunda7 | processmaker4 | blueworks | tas | all"
    ),
    port: int = typer.Option(
        8088, "--port", min=0, max=65535, metavar="PORT", help="Port (0 = any free port)."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", metavar="ADDRESS", help="Address to listen on."
    ),
    camunda7_as: str = typer.Option(
        "camunda7",
        "--camunda7-as",
        metavar="PRODUCT",
        help="Serve Camunda 7 as: camunda7 | operaton | cibseven.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Run an engine emulator until Ctrl-C (for local development and demos)."""
    from worker.local.sandbox import ENGINE_NAMES, SandboxServer
    from worker.validation import did_you_mean

    if engine != "all" and engine not in ENGINE_NAMES:
        fail(f"unknown engine {engine!r}{did_you_mean(engine, ENGINE_NAMES)}")
    try:
        server = SandboxServer(
            engines=engine, host=host, port=port, camunda7_product=camunda7_as
        ).start()
    except ValueError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_FAILED)
    names = list(ENGINE_NAMES) if engine == "all" else [engine]
    urls = {name: server.base_url(name) for name in names}
    if as_json:
        emit_json({"url": server.url, "base_urls": urls})
    else:
        for name, url in urls.items():
            console.print(plain(f"{name:14} base_url = {url}"))
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
