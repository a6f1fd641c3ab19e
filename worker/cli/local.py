"""Running everything locally: `startproc up` and `startproc demo`."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from worker.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    JsonOption,
    console,
    current_settings,
    emit_json,
    err_console,
    fail,
    need_producer,
    plain,
    print_error,
    results_table,
)

if TYPE_CHECKING:
    from worker.config import Settings


def _stop_on_sigterm(stopping: threading.Event | None = None) -> None:
    """SIGTERM (and with ``stopping``, SIGINT too) stops like Ctrl-C, and sets ``stopping``.

    The flag is what counts: a KeyboardInterrupt that lands in one of Python's
    at-fork hooks (while a child process is being started) is printed as
    "Exception ignored" and lost, but the flag stays set.
    """

    def handler(*_: object) -> None:
        if stopping is not None:
            stopping.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    if stopping is not None:
        signal.signal(signal.SIGINT, handler)


DATA_DIR = Path(".startproc")
PORT_FILE = "redis.port"


def up(
    concurrency: int = typer.Option(
        16,
        "--concurrency",
        "-c",
        min=1,
        max=1024,
        metavar="THREADS",
        help="Threads per worker process.",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        "-w",
        min=1,
        max=64,
        metavar="N",
        help="Worker processes. One process uses at most one core (the GIL): "
        "past ~150 starts/s, add processes, not threads (README: Sizing).",
    ),
    beat: bool = typer.Option(True, "--beat/--no-beat", help="Also run celery beat."),
    data_dir: Path = typer.Option(
        DATA_DIR,
        "--data-dir",
        metavar="DIR",
        help="The embedded Redis' data (append-only file) and port, and beat's state, kept "
        "between runs.",
    ),
    redis_port: int | None = typer.Option(
        None,
        "--redis-port",
        min=1,
        max=65535,
        metavar="PORT",
        help="Port of the embedded Redis (default: the one of the last run in --data-dir, "
        "else a free one, then kept).",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='First print {"broker_url": …, "embedded": …, "data_dir": …} as one JSON line.',
    ),
) -> None:
    """Run Redis (embedded unless STARTPROC_BROKER_URL is set), workers and beat until Ctrl-C.

    Everything is checked before anything starts: the settings, the whole targets
    file with its ${VAR}s, the schedules file, and a configured broker and Redis.
    The embedded Redis keeps its data and its port in --data-dir (./.startproc),
    so jobs, results and the URL to export survive a restart. Exits 1, naming
    it, when a worker or beat keeps failing at start.
    """
    cfg = current_settings()
    _check_before_start(cfg, beat)
    port = None if cfg.broker_url else _redis_port(data_dir, redis_port)
    stopping = threading.Event()
    _stop_on_sigterm(stopping)
    try:
        _run_up(cfg.broker_url, concurrency, beat, workers, data_dir, port, stopping, as_json)
    except KeyboardInterrupt:  # Ctrl-C while starting or stopping: still a clean stop
        console.print("stopped")


def _check_before_start(cfg: Settings, beat: bool) -> None:
    """What would make a worker or beat stop at start, said before anything runs."""
    from worker.runtime import check_lease
    from worker.targets import Targets

    targets = Targets.load(cfg.targets)  # every ${VAR}: the worker needs them all
    check_lease(cfg, targets)
    if beat and (cfg.schedules.exists() or "schedules" in cfg.model_fields_set):
        from worker.schedules.schedule import load_schedules

        load_schedules(cfg.schedules, targets.names())
    if cfg.broker_url:
        need_producer(cfg)


def _redis_port(data_dir: Path, chosen: int | None) -> int:
    """The embedded Redis' port: chosen, else the last run's, else a free one; recorded."""
    import socket

    from worker.local.embedded import free_port

    record = data_dir / PORT_FILE
    recorded = record.read_text().strip() if record.exists() else ""
    port = chosen or (int(recorded) if recorded.isdigit() else free_port())
    with socket.socket() as probe:
        # as redis-server binds: connections of the last run in TIME_WAIT do not count
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            fail(
                f"port {port} of the embedded Redis is in use: is another `startproc up` "
                f"running with --data-dir {data_dir}? (or choose one with --redis-port)",
                EXIT_FAILED,
            )
    data_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(f"{port}\n")
    return port


def _run_up(
    broker_url: str | None,
    concurrency: int,
    beat: bool,
    workers: int = 1,
    data_dir: Path = DATA_DIR,
    redis_port: int | None = None,
    stopping: threading.Event | None = None,
    as_json: bool = False,
) -> None:
    from worker.local.stack import FAST_EXIT_SECONDS, MAX_FAST_EXITS, LocalStack

    with LocalStack(
        broker_url=broker_url,
        appendonly=True,
        redis_port=redis_port,
        redis_dir=(data_dir / "redis").resolve(),
    ) as stack:
        try:  # Ctrl-C at any moment, even while starting, stops everything cleanly
            where = f"embedded Redis, data in {data_dir}" if stack.redis else "configured broker"
            if as_json:
                emit_json(
                    {
                        "broker_url": stack.broker_url,
                        "embedded": stack.redis is not None,
                        "data_dir": str(data_dir.resolve()),
                        "workers": workers,
                        "concurrency": concurrency,
                    }
                )
                sys.stdout.flush()
            else:
                console.print(plain(f"broker: {stack.broker_url} ({where})"))
                export = f"export STARTPROC_BROKER_URL={stack.broker_url}"
                console.print(plain(f"in another shell: {export}"))
                console.print(plain(f"workers: {workers} process(es) x {concurrency} threads"))
            for _ in range(workers):
                # -E: task events, so Flower (and `celery events`) show the jobs
                stack.start_worker(concurrency=concurrency, extra=["-E"])
            if beat:
                stack.start_beat(state_dir=data_dir.resolve())
            stopping = stopping or threading.Event()
            while stack.alive() and not stack.gave_up and not stopping.is_set():
                stopping.wait(0.5)
            if stopping.is_set():
                raise KeyboardInterrupt
            for name, status in stack.gave_up or [("every process", None)]:
                print_error(
                    f"{name} exited {MAX_FAST_EXITS} times within {FAST_EXIT_SECONDS:g} s of "
                    f"starting (last exit status {status}); its messages are above. Stopping."
                )
            raise typer.Exit(EXIT_FAILED)
        except KeyboardInterrupt:
            console.print("stopping…")


def demo(
    timeout: float = typer.Option(
        60.0, "--timeout", min=0, metavar="SECONDS", help="Seconds to wait for all results."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Start a few jobs on all five engines (sandboxes) end to end and print their results."""
    from worker import producer
    from worker.local import demo as scenario
    from worker.local.sandbox import SandboxServer
    from worker.local.stack import LocalStack

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
                plain(f"sandboxes on {sandbox.url}, broker {stack.broker_url}, logs in {workdir}")
            )
        stack.start_worker(concurrency=8)
        results, ok = [], True
        deadline = time.monotonic() + timeout
        for expected, job in scenario.demo_jobs():
            job_id = producer.enqueue(job)
            result = producer.wait(job_id, max(deadline - time.monotonic(), 0.1))
            if result is None:
                err_console.print(plain(f"no result for {job['target']} within {timeout}s"))
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
    from worker.local.sandbox import ENGINE_NAMES

    return tuple(ENGINE_NAMES)
