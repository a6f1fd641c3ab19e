"""Producing and inspecting jobs: enqueue, status, results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from kombu.exceptions import OperationalError

from worker.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
    JsonOption,
    console,
    current_settings,
    emit_json,
    fail,
    redact,
    result_exit_code,
    results_table,
)
from worker.errors import ConfigError, InvalidJob


def _parse_var(text: str) -> tuple[str, Any]:
    """``k=v``: v is read as JSON when it parses (``n=3``, ``ok=true``), else as a string."""
    if "=" not in text:
        fail(f"--var {text!r}: expected NAME=VALUE")
    name, raw = text.split("=", 1)
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def enqueue(
    target: str = typer.Option(..., "--target", "-t", help="Configured target name."),
    process: str = typer.Option(..., "--process", "-p", help="The engine's process identifier."),
    var: list[str] = typer.Option([], "--var", "-v", help="Variable NAME=VALUE (repeatable)."),
    vars_json: Path | None = typer.Option(None, "--vars-json", help="JSON object of variables."),
    business_key: str | None = typer.Option(None, "--business-key"),
    idempotency_key: str | None = typer.Option(None, "--idempotency-key"),
    version: int | None = typer.Option(None, "--version", help="Process definition version."),
    tenant_id: str | None = typer.Option(None, "--tenant-id"),
    option: list[str] = typer.Option([], "--option", "-o", help="Engine option NAME=VALUE."),
    wait: float | None = typer.Option(
        None, "--wait", help="Wait up to SECONDS for the result (exit 0 ok, 1 failed, 3 pending)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Enqueue one start job and print its job id (or its result with --wait)."""
    from worker import producer

    variables: dict[str, Any] = {}
    if vars_json is not None:
        try:
            loaded = json.loads(vars_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            fail(f"--vars-json {vars_json}: {exc}")
        if not isinstance(loaded, dict):
            fail(f"--vars-json {vars_json}: expected a JSON object")
        variables.update(loaded)
    variables.update(dict(_parse_var(v) for v in var))
    job: dict[str, Any] = {
        "target": target,
        "process": process,
        "variables": variables,
        "options": dict(_parse_var(o) for o in option),
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
    if not cfg.broker_url:
        fail("STARTPROC_BROKER_URL is not set (is `startproc up` running? it prints the URL)")
    try:
        job_id = producer.enqueue(job)
    except InvalidJob as exc:
        fail(exc.message)
    except ConfigError as exc:  # e.g. a RabbitMQ queue of another type than configured
        fail(str(exc))
    except OperationalError as exc:
        fail(f"broker unreachable at {redact(cfg.broker_url)}: {exc}", EXIT_FAILED)
    if wait is None:
        emit_json({"job_id": job_id}) if as_json else console.print(job_id)
        return
    result = producer.wait(job_id, wait)
    _print_result(job_id, result, as_json)
    raise typer.Exit(result_exit_code(result))


def _print_result(job_id: str, result: Any, as_json: bool) -> None:
    if as_json:
        emit_json(
            result.model_dump(mode="json") if result else {"job_id": job_id, "status": "pending"}
        )
    elif result is None:
        console.print(f"{job_id}: no result yet (pending)")
    else:
        console.print(results_table([result]))


def status(
    job_id: str | None = typer.Argument(None, help="Job id."),
    key: str | None = typer.Option(None, "--key", help="Look up by idempotency key instead."),
    target: str | None = typer.Option(None, "--target", help="Target of --key (faster, exact)."),
    as_json: bool = JsonOption,
) -> None:
    """Show a job's result by job id or idempotency key (exit 3 while pending)."""
    from worker.runtime import result_store

    if not job_id and not key:
        fail("give a JOB_ID or --key KEY")
    store = result_store(current_settings())
    result = store.get(job_id) if job_id else store.get_by_key(str(key), target)
    _print_result(job_id or str(key), result, as_json)
    raise typer.Exit(result_exit_code(result))


def results(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new results."),
    count: int = typer.Option(20, "--count", "-n", help="How many recent results."),
    as_json: bool = JsonOption,
) -> None:
    """Recent results from the results log (the results queue itself is left to consumers)."""
    from worker.runtime import result_store

    store = result_store(current_settings())
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
