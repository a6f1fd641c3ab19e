"""Fixtures shared by the whole suite: a real Redis, real sandboxes, real configs.

Redis is always our own embedded ``redis-server`` on a free port (never the
machine's 6379), so the suite runs the same on a laptop, on CI and on a
machine with no Redis at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection

from worker.config import Settings
from worker.local.embedded import EmbeddedRedis
from worker.local.sandbox import SandboxServer
from worker.runtime import Runtime, build_runtime
from worker.targets import Targets

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer(engines="all", port=0) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> Iterator[SandboxServer]:
    """The shared sandbox, reset (instances, faults, auth) for each test."""
    for name in ("camunda8", "camunda7", "processmaker4", "blueworks", "tas"):
        app = sandbox_server.app(name)
        app.reset()
        app.auth.configure(type="none")
    yield sandbox_server


def make_settings(redis_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "broker_url": redis_url,
        "redis_url": redis_url,
        "http_backoff_initial": 0.01,
        "http_backoff_max": 0.2,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def sandbox_targets(sandbox: SandboxServer, **extra: dict[str, object]) -> Targets:
    """One unauthenticated target per engine, named after the engine."""
    raw: dict[str, dict[str, object]] = {
        name: {"engine": name, "base_url": sandbox.base_url(name), "timeout": 5}
        for name in ("camunda8", "camunda7", "processmaker4", "blueworks", "tas")
    }
    for name, fields in extra.items():
        raw[name] = {**raw.get(name, {}), **fields}
    return Targets.from_dict({"targets": raw}, env=os.environ)


@pytest.fixture
def rt(redis_url: str, sandbox: SandboxServer) -> Runtime:
    """The worker's runtime in-process, on this test's Redis and sandboxes, sleeping never."""
    cfg = make_settings(redis_url, task_max_retries=2)
    targets = sandbox_targets(sandbox, tas={"retry_ambiguous": False})
    runtime = build_runtime(cfg, targets, Connection(redis_url))
    runtime.service.sleep = lambda _s: None
    runtime.service.policy.__dict__["sleep"] = lambda _s: None  # frozen dataclass: tests only
    return runtime
