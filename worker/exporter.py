"""The worker-side metrics exporter: an HTTP endpoint in the worker, and prefork's counters.

Pools: with the default ``threads`` pool every task runs in the worker's main
process, so its counters are process-wide and the exporter sees them all.
With ``prefork`` the jobs run in pool children, so each child keeps its
counters in files of a ``PROMETHEUS_MULTIPROC_DIR`` and `registry_for_scrape`
merges them with prometheus-client's ``MultiProcessCollector``. Nothing to
set by hand: when the exporter is on and that variable is unset, the same
``worker_init`` hook (main process, before the pool forks) makes a private
temporary directory, points the variable at it and switches prometheus-client
to its multiprocess values (it chose its value class when it was imported,
while the variable was still unset); the main process removes the directory
when it exits. A ``PROMETHEUS_MULTIPROC_DIR`` the user set is used as it is
and never removed (empty it before each start). The ``worker_process_shutdown``
hook calls ``mark_process_dead`` for each child that exits.

The two hooks are connected by `worker.celery_app`; this module imports no
Celery at import time.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import start_http_server
from prometheus_client import values as prometheus_values

from worker.metrics import (
    AMBIGUOUS,
    LATENCY,
    MULTIPROC_ENV,
    MULTIPROC_PREFIX,
    RETRIES,
    STARTS,
    redis_collector_from_settings,
    registry_for_scrape,
)

log = structlog.get_logger("worker.metrics")


# ---------------------------------------------------------------- worker-side exporter


def start_exporter(port: int, addr: str = "0.0.0.0") -> WSGIServer | None:
    """Serve this worker's metrics on ``port`` in a daemon thread; None (logged) if it can't.

    A worker that cannot export metrics still starts jobs: losing a scrape
    target is better than losing the worker. Several workers on one host need
    one port each (or multiprocess mode and one exporter).
    """
    registry = registry_for_scrape([redis_collector_from_settings()])
    try:
        server, _thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        log.error("metrics.exporter_failed", port=port, error=str(exc))
        return None
    multiprocess = bool(os.environ.get(MULTIPROC_ENV))
    log.info("metrics.exporter_started", port=port, multiprocess=multiprocess)
    return server


def forks_children(pool: object) -> bool:
    """Whether a worker pool (a name like ``"prefork"``, or a pool class) runs jobs in children."""
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool

    try:
        implementation = get_implementation(pool)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(implementation, type) and issubclass(implementation, TaskPool)


def enable_multiprocess() -> str | None:
    """Before a prefork pool forks: a private ``PROMETHEUS_MULTIPROC_DIR`` for its children.

    Returns the directory made (removed when this process exits), or None
    when the user set the variable: theirs is used and kept.

    prometheus-client picks its value class when ``prometheus_client.values``
    is imported, and that happened with this module's import, before any
    hook ran; so the class is chosen again now that the variable is set.
    Our metrics all have labels, and a labelled child takes the class when
    it is made: the children made so far (none, in a main process that runs
    no jobs) are dropped so that every one is made again in multiprocess mode.
    """
    if os.environ.get(MULTIPROC_ENV):
        return None
    for metric in (STARTS, LATENCY, RETRIES, AMBIGUOUS):
        metric.clear()  # before the switch: prometheus-client warns about clearing after it
    remove_stale_multiproc_dirs()
    path = tempfile.mkdtemp(prefix=f"{MULTIPROC_PREFIX}{os.getpid()}-")
    os.environ[MULTIPROC_ENV] = path
    choose: Any = prometheus_values.get_value_class  # prometheus-client's values are untyped
    prometheus_values.ValueClass = choose()
    atexit.register(_remove_multiproc_dir, path, os.getpid())
    log.info("metrics.multiprocess_dir", path=path)
    return path


def remove_stale_multiproc_dirs(base: str | None = None) -> list[str]:
    """Remove the private directories of workers that died without their exit hook (SIGKILL).

    A directory's name carries the pid of the worker that made it; one whose
    process no longer exists is removed. The removed paths are returned.
    """
    removed = []
    for entry in Path(base or tempfile.gettempdir()).glob(f"{MULTIPROC_PREFIX}*-*"):
        owner = entry.name.removeprefix(MULTIPROC_PREFIX).split("-", 1)[0]
        if not owner.isdigit() or not entry.is_dir() or entry.stat().st_uid != os.getuid():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
        except PermissionError:  # alive, someone else's
            continue
    if removed:
        log.info("metrics.stale_multiprocess_dirs_removed", paths=removed)
    return removed


def _remove_multiproc_dir(path: str, owner: int) -> None:
    """At exit of the process that made ``path`` (a forked child inherits the hook: not there)."""
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def on_worker_init(sender: Any = None, **_: Any) -> None:
    """Start the exporter in the worker's main process when STARTPROC_METRICS_PORT is set.

    A prefork worker gets multiprocess mode first (`enable_multiprocess`):
    ``worker_init`` runs before the pool forks its children.
    """
    from worker.config import settings

    cfg = settings()
    if cfg.metrics_port is None:
        return
    if forks_children(getattr(sender, "pool_cls", None) or cfg.worker_pool):
        enable_multiprocess()
    start_exporter(cfg.metrics_port)


def forget_dead_child(pid: int | None = None, **_: Any) -> None:
    """Prefork + multiprocess mode: drop a dead child's live-gauge files (counters stay)."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        from prometheus_client import multiprocess

        mark_dead: Any = multiprocess.mark_process_dead
        mark_dead(pid or os.getpid(), path)
