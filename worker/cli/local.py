"""Running everything locally: `startproc up` and `startproc demo`."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import typer

from worker.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    JsonOption,
    console,
    current_settings,
    emit_json,
    err_console,
    results_table,
)


def _stop_on_sigterm() -> None:
    def handler(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def up(
    concurrency: int = typer.Option(
        16, "--concurrency", "-c", min=1, max=1024, help="Threads per worker process."
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        "-w",
        min=1,
        max=64,
        help="Worker processes. One process uses at most one core (the GIL): "
        "past ~150 starts/s, add processes, not threads (README: Sizing).",
    ),
    beat: bool = typer.Option(True, "--beat/--no-beat", help="Also run celery beat."),
) -> None:
    """Run Redis (embedded unless STARTPROC_BROKER_URL is set), workers and beat until Ctrl-C."""
    cfg = current_settings()
    _stop_on_sigterm()
    try:
        _run_up(cfg.broker_url, concurrency, beat, workers)
    except KeyboardInterrupt:  # Ctrl-C while starting or stopping: still a clean stop
        console.print("stopped")


def _run_up(broker_url: str | None, concurrency: int, beat: bool, workers: int = 1) -> None:
    from worker.stack import LocalStack

    with LocalStack(broker_url=broker_url, appendonly=True) as stack:
        try:  # Ctrl-C at any moment, even while starting, stops everything cleanly
            where = "embedded Redis" if stack.redis else "configured broker"
            console.print(f"broker: {stack.broker_url} ({where})")
            console.print(f"in another shell: export STARTPROC_BROKER_URL={stack.broker_url}")
            console.print(f"workers: {workers} process(es) x {concurrency} threads")
            for _ in range(workers):
                stack.start_worker(concurrency=concurrency)
            if beat:
                stack.start_beat()
            while stack.alive():  # crashed children are restarted; a crash loop ends it
                time.sleep(0.5)
            err_console.print("the worker keeps exiting at start (see its messages); stopping")
            raise typer.Exit(EXIT_FAILED)
        except KeyboardInterrupt:
            console.print("stopping…")


def demo(
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for all results."),
    as_json: bool = JsonOption,
) -> None:
    """Start a few jobs on all five engines (sandboxes) end to end and print their results."""
    from worker import demo as scenario
    from worker import producer
    from worker.sandbox import SandboxServer
    from worker.stack import LocalStack

    cfg = current_settings()
    _stop_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="startproc-demo-"))
    with (
        SandboxServer(engines="all", port=0) as sandbox,
        LocalStack(broker_url=cfg.broker_url, log_dir=workdir) as stack,
    ):
        scenario.configure_sandbox(sandbox)
        targets = scenario.write_targets(sandbox, workdir / "targets.toml")
        env = {"STARTPROC_TARGETS": str(targets), scenario.SECRET_VAR: scenario.DEMO_SECRET}
        stack.env = env
        os.environ.update({**env, "STARTPROC_BROKER_URL": str(stack.broker_url)})
        from worker.config import settings

        settings.cache_clear()
        if not as_json:
            console.print(
                f"sandboxes on {sandbox.url}, broker {stack.broker_url}, logs in {workdir}"
            )
        stack.start_worker(concurrency=8)
        results, ok = [], True
        deadline = time.monotonic() + timeout
        for expected, job in scenario.demo_jobs():
            job_id = producer.enqueue(job)
            result = producer.wait(job_id, max(deadline - time.monotonic(), 0.1))
            if result is None:
                err_console.print(f"no result for {job['target']} within {timeout}s")
                ok = False
                continue
            results.append(result)
            ok &= result.status == expected
        if as_json:
            emit_json([r.model_dump(mode="json") for r in results])
        else:
            console.print(results_table(results, title="demo results"))
            created = sum(sandbox.app(name).count() for name in scenario_engines())
            console.print(f"instances in the sandboxes: {created}")
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


def scenario_engines() -> tuple[str, ...]:
    from worker.sandbox import ENGINE_NAMES

    return tuple(ENGINE_NAMES)
