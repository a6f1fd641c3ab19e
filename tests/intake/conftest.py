"""The intake on a real uvicorn server, in front of a real pipeline.

* ``pipeline`` (per module): embedded Redis, a ``celery worker`` child
  process with the worker-side metrics exporter on a free port, and the demo
  targets pointing at the sandboxes;
* ``intake`` (per module): `create_app` on uvicorn in a thread, on a socket
  bound to 127.0.0.1:0 before the server starts (no port race), with two
  bearer tokens configured;
* ``live`` (per test): clean Redis and sandboxes configured like the demo.

Waiting is always for a condition with a deadline (the server's ``started``
flag, a result in the results index, a sandbox instance), never a fixed sleep.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from worker import demo
from worker.config import settings
from worker.embedded import EmbeddedRedis
from worker.intake import create_app
from worker.sandbox import SandboxServer
from worker.stack import LocalStack

from .helpers import (
    AUTH,
    OTHER_TOKEN,
    TOKEN,
    Pipeline,
    RunningServer,
    free_port,
    start_server,
    stop_server,
)


@pytest.fixture(scope="module")
def pipeline(
    redis_server: EmbeddedRedis,
    sandbox_server: SandboxServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("intake-pipeline")
    targets = demo.write_targets(sandbox_server, workdir / "targets.toml")
    metrics_port = free_port()
    env = {
        "STARTPROC_BROKER_URL": redis_server.url,
        "STARTPROC_REDIS_URL": redis_server.url,
        "STARTPROC_TARGETS": str(targets),
        "STARTPROC_HTTP_BACKOFF_INITIAL": "0.01",
        "STARTPROC_HTTP_BACKOFF_MAX": "0.2",
        "STARTPROC_TASK_RETRY_BACKOFF_MAX": "1",
        "STARTPROC_INTAKE_TOKENS": f"{TOKEN}, {OTHER_TOKEN}",
        "STARTPROC_METRICS_PORT": str(metrics_port),
        demo.SECRET_VAR: demo.DEMO_SECRET,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    settings.cache_clear()
    stack = LocalStack(broker_url=redis_server.url, env=env, log_dir=workdir / "logs")
    # The exporter starts from worker.metrics' worker_init hook, as in production.
    stack.start_worker(concurrency=4)
    try:
        yield Pipeline(
            stack, sandbox_server, env, workdir / "logs", f"http://127.0.0.1:{metrics_port}"
        )
    finally:
        stack.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        settings.cache_clear()


@pytest.fixture(scope="module")
def intake(pipeline: Pipeline) -> Iterator[RunningServer]:
    running = start_server(create_app(settings()))
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture
def live(pipeline: Pipeline, sandbox: SandboxServer, redis_url: str) -> Pipeline:
    """The module's pipeline with a clean Redis and sandboxes configured like the demo."""
    demo.configure_sandbox(sandbox)
    return pipeline


@pytest.fixture
def http(intake: RunningServer, live: Pipeline) -> Iterator[httpx.Client]:
    """An authenticated client of the intake, with the live pipeline behind it."""
    with intake.client(**AUTH) as client:
        yield client
