"""A real pipeline: embedded Redis, a `celery worker` child process, the sandboxes.

The worker is started once per module (start-up costs seconds); each test
gets a flushed Redis and reset sandboxes through the root fixtures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from worker import demo
from worker.config import settings
from worker.embedded import EmbeddedRedis
from worker.models import Result
from worker.runtime import result_store
from worker.sandbox import SandboxServer
from worker.stack import LocalStack


@dataclass
class Pipeline:
    stack: LocalStack
    sandbox: SandboxServer
    env: dict[str, str]
    log_dir: Path

    def wait(self, job_id: str, timeout: float = 30.0) -> Result:
        result = result_store(settings()).wait(job_id, timeout)
        if result is None:
            logs = "\n".join(p.read_text()[-3000:] for p in self.log_dir.glob("*.log"))
            raise AssertionError(f"no result for {job_id} within {timeout}s; worker logs:\n{logs}")
        return result

    def wait_all(self, job_ids: list[str], timeout: float = 60.0) -> list[Result]:
        deadline = time.monotonic() + timeout
        return [self.wait(j, max(deadline - time.monotonic(), 0.1)) for j in job_ids]


@pytest.fixture(scope="module")
def pipeline(
    redis_server: EmbeddedRedis,
    sandbox_server: SandboxServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("pipeline")
    targets = demo.write_targets(sandbox_server, workdir / "targets.toml")
    env = {
        "STARTPROC_BROKER_URL": redis_server.url,
        "STARTPROC_REDIS_URL": redis_server.url,
        "STARTPROC_TARGETS": str(targets),
        "STARTPROC_HTTP_BACKOFF_INITIAL": "0.01",
        "STARTPROC_HTTP_BACKOFF_MAX": "0.2",
        "STARTPROC_TASK_RETRY_BACKOFF_MAX": "1",
        demo.SECRET_VAR: demo.DEMO_SECRET,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    settings.cache_clear()
    stack = LocalStack(broker_url=redis_server.url, env=env, log_dir=workdir / "logs")
    stack.start_worker(concurrency=4)
    try:
        yield Pipeline(stack, sandbox_server, env, workdir / "logs")
    finally:
        stack.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        settings.cache_clear()


@pytest.fixture
def live(pipeline: Pipeline, sandbox: SandboxServer, redis_url: str) -> Pipeline:
    """The module's pipeline with a clean Redis and sandboxes configured like the demo."""
    demo.configure_sandbox(sandbox)
    return pipeline
