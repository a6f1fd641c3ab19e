"""The embedded Redis starts on a free port, persists with AOF and leaves no orphan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import redis

from worker.local.embedded import EmbeddedRedis


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_two_instances_get_their_own_ports_and_clean_up() -> None:
    with EmbeddedRedis() as a, EmbeddedRedis() as b:
        assert a.port != b.port
        assert redis.Redis.from_url(a.url).ping() and redis.Redis.from_url(b.url).ping()
        pid, data_dir = a.process.pid, a.dir  # type: ignore[union-attr]
    assert _wait_gone(pid)
    assert not data_dir.exists()


def test_restart_keeps_data_with_aof() -> None:
    with EmbeddedRedis(appendonly=True) as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        server.restart(kill=True)
        assert redis.Redis.from_url(server.url).get("k") == b"v"


def test_redis_dies_with_a_killed_parent() -> None:
    code = (
        "from worker.local.embedded import EmbeddedRedis; import sys, time\n"
        "r = EmbeddedRedis().start(); print(r.process.pid, flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    assert _wait_gone(child)
