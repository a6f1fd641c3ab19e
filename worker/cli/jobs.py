"""Producing and inspecting jobs: enqueue, status, results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from worker.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
    EXIT_UNKNOWN,
    WAIT_HELP,
    JsonOption,
    console,
    current_settings,
    emit_json,
    fail,
    load_targets_for,
    need_producer,
    need_redis,
    plain,
    print_error,
    result_exit_code,
    results_table,
)

if TYPE_CHECKING:
    from worker.config import Settings
    from worker.delivery.results import ResultStore
    from worker.models import Result

# A shorter job id is looked up as a prefix too (a uuid4 job id has 36 characters).
FULL_ID_LENGTH = 36
VAR_HELP = (
    "Variable NAME=VALUE (repeatable). VALUE is read as JSON when it is valid JSON, "
    "else as text: n=3 is the number 3, ok=true a boolean, x=null null, "
    'tags=\'["a","b"]\' a list, while id=00123, code=A-17 and n=\'"3"\' are strings.'
)


def _parse_var(text: str, option: str = "--var") -> tuple[str, Any]:
    """``k=v``: v is read as JSON when it parses (``n=3``, ``ok=true``), else as a string."""
    if "=" not in text:
        fail(f"{option} {text!r}: expected NAME=VALUE")
    name, raw = text.split("=", 1)
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def enqueue(
    target: str = typer.Option(
        ..., "--target", "-t", metavar="NAME", help="Target name from the targets file."
    ),
    process: str = typer.Option(
        ..., "--process", "-p", metavar="ID", help="The engine's process identifier."
    ),
    var: list[str] = typer.Option([], "--var", "-v", metavar="NAME=VALUE", help=VAR_HELP),
    vars_json: Path | None = typer.Option(
        None, "--vars-json", metavar="FILE", help="JSON file with an object of variables."
    ),
    business_key: str | None = typer.Option(
        None,
        "--business-key",
        metavar="KEY",
        help="Business key; also makes the idempotency key TARGET:PROCESS:KEY.",
    ),
    idempotency_key: str | None = typer.Option(
        None,
        "--idempotency-key",
        metavar="KEY",
        help="Idempotency key: a second job with it starts nothing (status duplicate).",
    ),
    version: int | None = typer.Option(
        None, "--version", metavar="N", help="Process definition version (default: latest)."
    ),
    tenant_id: str | None = typer.Option(
        None, "--tenant-id", metavar="ID", help="Tenant of the process definition."
    ),
    option: list[str] = typer.Option(
        [],
        "--option",
        "-o",
        metavar="NAME=VALUE",
        help="Engine option (repeatable), VALUE typed as for --var, e.g. -o tags='[\"x\"]'.",
    ),
    wait: float | None = typer.Option(None, "--wait", min=0, metavar="[SECONDS]", help=WAIT_HELP),
    as_json: bool = JsonOption,
) -> None:
    """Enqueue one start job and print its job id (or its result with --wait).

    The target must be in the targets file (STARTPROC_TARGETS). Exit codes:
    0 enqueued (with --wait: created/duplicate), 1 failed or Redis/the broker
    unreachable, 2 usage or configuration error, 3 --wait ran out.
    """
    from worker import producer

    variables: dict[str, Any] = {}
    if vars_json is not None:
        try:
            loaded = json.loads(vars_json.read_text(encoding="utf-8"))
        except OSError as exc:
            fail(f"--vars-json {vars_json}: {exc.strerror or exc}")
        except ValueError as exc:
            fail(f"--vars-json {vars_json}: not JSON: {exc}")
        if not isinstance(loaded, dict):
            fail(f"--vars-json {vars_json}: expected a JSON object")
        variables.update(loaded)
    variables.update(dict(_parse_var(v) for v in var))
    job: dict[str, Any] = {
        "target": target,
        "process": process,
        "variables": variables,
        "options": dict(_parse_var(o, "--option") for o in option),
    }
    for name, value in (
        ("business_key", business_key),
        ("idempotency_key", idempotency_key),
        ("version", version),
        ("tenant_id", tenant_id),
    ):
        if value is not None:
            job[name] = value
    cfg = current_settings()
    check_target_named(cfg, target)
    prepared = producer.prepare(job)  # an invalid job: exit 2 with every field named
    if wait is not None:
        cfg.require_redis()  # waiting reads the results index: say so before sending
    [job_id] = producer.publish([prepared], need_producer(cfg))
    if wait is None:
        emit_json({"job_id": job_id}) if as_json else console.print(plain(job_id))
        return
    result = producer.wait(job_id, wait)
    _print_result(job_id, result, as_json)
    raise typer.Exit(result_exit_code(result))


def check_target_named(cfg: Settings, target: str, option: str = "--target") -> None:
    """The whole targets file is valid and declares ``target`` (no secrets needed)."""
    from worker.cli.common import check_target

    check_target(load_targets_for(cfg), target, option)


def _print_result(job_id: str, result: Result | None, as_json: bool) -> None:
    if as_json:
        emit_json(
            result.model_dump(mode="json") if result else {"job_id": job_id, "status": "pending"}
        )
    elif result is None:
        console.print(plain(f"{job_id}: no result yet (pending)"))
    else:
        console.print(results_table([result]))


def result_reader(cfg: Settings) -> ResultStore:
    """The results index for reading: needs Redis only (checked to answer), not the broker."""
    from worker.broker.connections import shared_redis
    from worker.delivery.results import ResultStore

    def read_only(_result: dict[str, Any]) -> None:
        raise RuntimeError("a result reader does not publish")

    return ResultStore(shared_redis(need_redis(cfg)), read_only, cfg.retention_days)


def _resolve(store: ResultStore, job_id: str) -> tuple[str, Result | None, bool]:
    """The job id (a unique prefix expanded), its result, and whether it is known."""
    result, known = store.lookup(job_id)
    if known or len(job_id) >= FULL_ID_LENGTH:
        return job_id, result, known
    matches = store.job_ids_starting(job_id, limit=6)
    if len(matches) == 1:
        result, known = store.lookup(matches[0])
        return matches[0], result, known
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
        fail(f"job id {job_id!r} is the start of several job ids ({shown}): give more of it")
    return job_id, None, False


def status(
    job_id: str | None = typer.Argument(
        None, metavar="JOB_ID", help="Job id, or its first characters if they are unique."
    ),
    key: str | None = typer.Option(
        None, "--key", metavar="KEY", help="Look up by idempotency key instead."
    ),
    target: str | None = typer.Option(
        None, "--target", metavar="NAME", help="Target of --key (one exact read instead of a scan)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Show a job's result by job id or idempotency key.

    Exit codes: 0 created/duplicate, 1 failed, 3 pending (enqueued, no result
    yet), 4 unknown job id (never enqueued through startproc's producers, or
    its result expired after STARTPROC_RETENTION_DAYS).
    """
    if not job_id and not key:
        fail("give a JOB_ID or --key KEY")
    cfg = current_settings()
    store = result_reader(cfg)
    if not job_id:
        result = store.get_by_key(str(key), target)
        _print_result(str(key), result, as_json)
        raise typer.Exit(result_exit_code(result))
    job_id, result, known = _resolve(store, job_id)
    if not known:
        if as_json:
            emit_json({"job_id": job_id, "status": "unknown"})
        else:
            print_error(
                f"unknown job id {job_id!r}: never enqueued through startproc, or its result "
                f"expired (results are kept {cfg.retention_days} days)"
            )
        raise typer.Exit(EXIT_UNKNOWN)
    _print_result(job_id, result, as_json)
    raise typer.Exit(result_exit_code(result))


def results(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new results."),
    count: int = typer.Option(
        20, "--count", "-n", min=1, metavar="N", help="How many recent results."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Recent results from the results log (the results queue itself is left to consumers)."""
    store = result_reader(current_settings())
    recent = store.recent(count)
    if as_json:
        for r in recent:
            emit_json(r.model_dump(mode="json"))
    else:
        console.print(results_table(recent, title="recent results"))
    if not follow:
        raise typer.Exit(EXIT_OK)
    try:
        for new in store.follow():
            if new is None:
                continue
            if as_json:
                emit_json(new.model_dump(mode="json"))
            else:
                console.print(results_table([new]))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_OK) from None


__all__ = ["EXIT_FAILED", "EXIT_PENDING", "enqueue", "results", "status"]
