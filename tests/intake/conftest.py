"""The intake on a real uvicorn server, in front of a real pipeline.

* ``pipeline`` (per module): the integration tests' `running_pipeline`
  (embedded Redis, a ``celery worker`` child process, the demo targets
  pointing at the sandboxes) with two bearer tokens configured and the
  worker-side metrics exporter on a free port;
* ``intake`` (per module): `create_app` on uvicorn in a thread, on a socket
  bound to 127.0.0.1:0 before the server starts (no port race);
* ``live`` (per test): clean Redis and sandboxes configured like the demo.

Waiting is always for a condition with a deadline (the server's ``started``
flag, a result in the results index, a sandbox instance), never a fixed sleep.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.conftest import module_pipeline
from worker.config import settings
from worker.intake import create_app
from worker.local import demo
from worker.local.sandbox import SandboxServer

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

# The exporter starts from worker.metrics' worker_init hook, as in production.
pipeline = module_pipeline(
    "intake-pipeline",
    lambda _workdir: {
        "STARTPROC_INTAKE_TOKENS": f"{TOKEN}, {OTHER_TOKEN}",
        "STARTPROC_METRICS_PORT": str(free_port()),
    },
)


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
