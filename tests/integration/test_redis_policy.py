"""A Redis that may evict keys stops workers, beat and producers at start, naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.cli import startproc
from worker.local import demo
from worker.local.embedded import EmbeddedRedis
from worker.local.sandbox import SandboxServer

pytestmark = pytest.mark.integration


@pytest.fixture
def evicting(sandbox: SandboxServer, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a deployment whose Redis runs ``allkeys-lru``."""
    with EmbeddedRedis() as server:
        redis.Redis.from_url(server.url).config_set("maxmemory-policy", "allkeys-lru")
        yield {
            "STARTPROC_BROKER_URL": server.url,
            "STARTPROC_REDIS_URL": server.url,
            "STARTPROC_TARGETS": str(demo.write_targets(sandbox, tmp_path / "targets.toml")),
            demo.SECRET_VAR: demo.DEMO_SECRET,
        }


def celery(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_a_worker_refuses_to_start(evicting: dict[str, str]) -> None:
    done = celery("worker", "--pool", "solo", "--without-mingle", env=evicting)
    assert done.returncode != 0
    assert "configuration error" in done.stderr
    assert "maxmemory-policy 'allkeys-lru'" in done.stderr and "noeviction" in done.stderr


def test_beat_refuses_to_start(evicting: dict[str, str], tmp_path: Path) -> None:
    done = celery("beat", "-s", str(tmp_path / "beat-state"), env=evicting)
    assert done.returncode != 0
    assert "maxmemory-policy 'allkeys-lru'" in done.stderr


def test_enqueue_refuses_and_sends_nothing(evicting: dict[str, str]) -> None:
    done = startproc("enqueue", "-t", "orders", "-p", "order-process", "--json", env=evicting)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "maxmemory-policy 'allkeys-lru'" in done.stderr and "Traceback" not in done.stderr
    client = redis.Redis.from_url(evicting["STARTPROC_BROKER_URL"])
    assert client.llen("startproc.jobs") == 0 and client.hlen("startproc:inflight") == 0
