"""A local stack: embedded Redis (unless a broker is given) plus worker/beat processes.

`startproc up`, `startproc demo` and the integration tests all run the same
real pieces this way: a real ``celery worker`` in a child process, talking to
a real Redis. Children are started in their own process group, asked to die
with their parent, and stopped on exit, Ctrl-C included.

Like systemd or a compose ``restart:`` policy, the stack restarts a worker or
beat that exits on its own: Celery's Redis transport can still end a worker
with "Unrecoverable error" when the broker drops at an unlucky moment
(celery/kombu issues #582, #970, celery#4652), and a supervisor is the
documented answer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from worker.local.embedded import EmbeddedRedis, _die_with_parent

FAST_EXIT_SECONDS = 5.0
MAX_FAST_EXITS = 3


@dataclass
class _Spec:
    """How to start a child again, and how often it died right after starting."""

    args: list[str]
    name: str
    env: dict[str, str]
    started: float = field(default_factory=time.monotonic)
    fast_exits: int = 0


def _child_setup() -> None:
    os.setpgrp()
    _die_with_parent()


@dataclass
class LocalStack:
    """Owns the embedded Redis and the worker/beat processes it starts."""

    broker_url: str | None = None
    redis_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    appendonly: bool = False
    log_dir: Path | None = None
    # The embedded Redis' port and data directory (kept); default: a free port, a temporary one.
    redis_port: int | None = None
    redis_dir: Path | None = None
    redis: EmbeddedRedis | None = None
    supervise: bool = True
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    restarts: int = 0
    # Children that kept exiting right after starting and were not restarted again:
    # (name, last exit status).
    gave_up: list[tuple[str, int | None]] = field(default_factory=list)
    _specs: dict[int, _Spec] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None

    def start(self) -> LocalStack:
        if not self.broker_url:
            self.redis = EmbeddedRedis(
                appendonly=self.appendonly, port=self.redis_port, data_dir=self.redis_dir
            ).start()
            self.broker_url = self.redis.url
        return self

    @property
    def child_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env, "STARTPROC_BROKER_URL": str(self.broker_url)}
        if self.redis_url:
            env["STARTPROC_REDIS_URL"] = self.redis_url
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(
        self, args: list[str], name: str, env: dict[str, str] | None = None, fast_exits: int = 0
    ) -> subprocess.Popen[bytes]:
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}-{len(self.processes)}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            args,
            env={**self.child_env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            preexec_fn=_child_setup,
        )
        if out is not None:
            out.close()
        with self._lock:
            self.processes.append(proc)
            self._specs[proc.pid] = _Spec(args, name, env or {}, fast_exits=fast_exits)
        self._watch()
        return proc

    def _watch(self) -> None:
        if self.supervise and self._watcher is None:
            watcher = threading.Thread(target=self._supervise, daemon=True)
            watcher.start()
            # Published only once started: a Ctrl-C in between must not leave `stop()` a
            # thread to join that never ran (a started one it misses ends with `_stopping`).
            self._watcher = watcher

    def _supervise(self) -> None:
        """Restart children that exit while the stack is running."""
        while not self._stopping.wait(0.5):
            with self._lock:
                dead = [p for p in self.processes if p.poll() is not None]
            for proc in dead:
                spec = self._specs.pop(proc.pid, None)
                if spec is None:
                    continue  # stopped on purpose meanwhile
                quick = time.monotonic() - spec.started < FAST_EXIT_SECONDS
                fast_exits = spec.fast_exits + 1 if quick else 0
                if not self._stopping.is_set() and fast_exits < MAX_FAST_EXITS:
                    self.restarts += 1
                    self._spawn(spec.args, spec.name, spec.env, fast_exits)
                elif not self._stopping.is_set():
                    self.gave_up.append((spec.name, proc.returncode))
                # the replacement is listed before the dead one leaves: `alive()` sees no gap
                with self._lock:
                    if proc in self.processes:
                        self.processes.remove(proc)

    def alive(self) -> bool:
        """Some child runs (or is about to be restarted)."""
        with self._lock:
            return bool(self.processes)

    def start_worker(
        self,
        concurrency: int = 8,
        pool: str = "threads",
        hostname: str | None = None,
        extra: list[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        name = hostname or f"worker{len(self.processes)}@%h"
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "-Q",
            self.child_env.get("STARTPROC_JOBS_QUEUE", "startproc.jobs"),
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--hostname",
            name,
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
            *(extra or []),
        ]
        # Celery cannot tell `--pool prefork` from its default and lets the app's
        # configured pool win, so the pool is chosen through our own setting.
        env = {"STARTPROC_WORKER_POOL": pool, "STARTPROC_WORKER_CONCURRENCY": str(concurrency)}
        return self._spawn(args, "worker", env)

    def start_beat(self, state_dir: Path | None = None) -> subprocess.Popen[bytes]:
        """``state_dir``: where beat's ``-s`` file (and its heartbeat) go."""
        state_dir = state_dir or (
            self.redis.dir if self.redis else self.log_dir or Path(tempfile.mkdtemp())
        )
        schedule = Path(state_dir) / "celerybeat-schedule"
        args = [sys.executable, "-m", "celery", "-A", "worker", "beat", "-s", str(schedule)]
        return self._spawn(args, "beat")

    def stop_process(self, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
        """SIGTERM the whole group (warm shutdown), then SIGKILL if it lingers."""
        with self._lock:
            if proc in self.processes:
                self.processes.remove(proc)  # stopped on purpose: not restarted
            self._specs.pop(proc.pid, None)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        for proc in list(reversed(self.processes)):
            self.stop_process(proc)
        if self.redis is not None:
            self.redis.close()
            self.redis = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()
