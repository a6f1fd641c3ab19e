"""The embedded Redis starts on a free port, persists with AOF and leaves no orphan."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
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


SYSTEM_REDIS = shutil.which("redis-server")


@pytest.mark.parametrize(
    "binary",
    [
        pytest.param(None, id="bundled"),
        pytest.param(
            SYSTEM_REDIS,
            id="system",  # Redis >= 7 keeps its AOF in a directory
            marks=pytest.mark.skipif(SYSTEM_REDIS is None, reason="no system redis-server"),
        ),
    ],
)
def test_rewind_loses_every_write_after_the_snapshot(
    binary: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a host crash does to an everysec AOF, or a failover to a lagging replica."""
    if binary is not None:
        monkeypatch.setenv("STARTPROC_REDIS_SERVER", binary)
    with EmbeddedRedis(appendonly=True, appendfsync="everysec") as server:
        client = redis.Redis.from_url(server.url)
        client.set("before", "kept")
        snapshot = server.snapshot()
        client.set("after", "lost")
        client.incr("before:counter")
        first_run = client.info("server")["run_id"]
        assert server.rewind(snapshot) > 0
        client = redis.Redis.from_url(server.url)
        assert client.get("before") == b"kept"
        assert client.get("after") is None and client.get("before:counter") is None
        assert client.info("server")["run_id"] != first_run
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}


def test_appendfsync_is_checked() -> None:
    with pytest.raises(ValueError, match="appendfsync"):
        EmbeddedRedis(appendfsync="no")
