"""A real pipeline: embedded Redis, a `celery worker` child process, the sandboxes.

The worker is started once per module (start-up costs seconds); each test
gets a flushed Redis and reset sandboxes through the root fixtures.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from tests.support.service import drain
from worker.config import environment, settings
from worker.local import demo
from worker.local.embedded import EmbeddedRedis
from worker.local.sandbox import SandboxServer
from worker.local.stack import LocalStack
from worker.models import Result
from worker.runtime import result_store

RABBITMQ_URL = os.environ.get("STARTPROC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def rabbitmq_reachable(url: str = RABBITMQ_URL) -> bool:
    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


@dataclass
class Pipeline:
    stack: LocalStack
    sandbox: SandboxServer
    env: dict[str, str]
    log_dir: Path
    broker: str = "redis"

    @property
    def broker_url(self) -> str:
        return self.env["STARTPROC_BROKER_URL"]

    @property
    def results_queue(self) -> str:
        return self.env["STARTPROC_RESULTS_QUEUE"]

    @property
    def jobs_queue(self) -> str:
        return self.env["STARTPROC_JOBS_QUEUE"]

    def wait(self, job_id: str, timeout: float = 30.0) -> Result:
        result = result_store(settings()).wait(job_id, timeout)
        if result is None:
            logs = "\n".join(p.read_text()[-3000:] for p in self.log_dir.glob("*.log"))
            raise AssertionError(f"no result for {job_id} within {timeout}s; worker logs:\n{logs}")
        return result

    def wait_all(self, job_ids: list[str], timeout: float = 60.0) -> list[Result]:
        deadline = time.monotonic() + timeout
        return [self.wait(j, max(deadline - time.monotonic(), 0.1)) for j in job_ids]


@contextmanager
def running_pipeline(
    broker: str,
    redis_server: EmbeddedRedis,
    sandbox: SandboxServer,
    workdir: Path,
    extra_env: Mapping[str, str] | None = None,
    pool: str = "threads",
    concurrency: int = 4,
) -> Iterator[Pipeline]:
    """A worker process on the given broker (the ledger always on the embedded Redis).

    ``extra_env`` is set in this process too, for as long as the pipeline runs,
    so everything its stack starts later (a beat, a second worker) inherits it.

    On RabbitMQ the queues get unique names, since the server is shared, and
    are deleted afterwards with the jobs queue's exchange.
    """
    broker_url = redis_server.url
    hostname = None
    queues = {
        "STARTPROC_JOBS_QUEUE": "startproc.jobs",
        "STARTPROC_RESULTS_QUEUE": "startproc.results",
    }
    if broker == "rabbitmq":
        broker_url = RABBITMQ_URL
        suffix = uuid.uuid4().hex[:8]
        queues = {name: f"{value}.{suffix}" for name, value in queues.items()}
        # a worker's remote-control queue is named after its host name: unique on a shared server
        hostname = f"worker-{suffix}@%h"
    queues.update({k: v for k, v in (extra_env or {}).items() if k in queues})
    targets = demo.write_targets(sandbox, workdir / "targets.toml")
    env = {
        "STARTPROC_BROKER_URL": broker_url,
        "STARTPROC_REDIS_URL": redis_server.url,
        **queues,
        "STARTPROC_TARGETS": str(targets),
        "STARTPROC_HTTP_BACKOFF_INITIAL": "0.01",
        "STARTPROC_HTTP_BACKOFF_MAX": "0.2",
        # 4 s: a Retry-After of 4 s still reaches Celery whole (test_rabbitmq waits for it in
        # the 4-second delay queue); backoff countdowns stay far below it.
        "STARTPROC_TASK_RETRY_BACKOFF_MAX": "4",
        demo.SECRET_VAR: demo.DEMO_SECRET,
        **(extra_env or {}),
    }
    with environment(env):
        stack = LocalStack(broker_url=broker_url, env=env, log_dir=workdir / "logs")
        stack.start_worker(concurrency=concurrency, pool=pool, hostname=hostname)
        try:
            yield Pipeline(stack, sandbox, env, workdir / "logs", broker=broker)
        finally:
            stack.stop()
            if broker == "rabbitmq":
                # the jobs queue's topic exchange has the queue's name (worker.celery_app)
                delete_broker_entities(
                    broker_url, list(queues.values()), [queues["STARTPROC_JOBS_QUEUE"]]
                )


def module_pipeline(
    folder: str,
    env: Callable[[Path], Mapping[str, str]] | None = None,
    broker: str = "redis",
    name: str = "pipeline",
    **options: Any,
) -> Any:
    """A module-scoped fixture called ``name``: `running_pipeline` in a fresh ``folder``.

    ``env(folder)`` runs when the fixture starts (free ports, files written to
    the folder) and is added to the pipeline's environment; ``options`` are
    `running_pipeline`'s (``pool``, ``concurrency``). For a test module or
    folder that needs a few more variables than the fixtures below.
    """

    @pytest.fixture(scope="module", name=name)
    def fixture(
        redis_server: EmbeddedRedis,
        sandbox_server: SandboxServer,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> Iterator[Pipeline]:
        if broker == "rabbitmq":
            require_rabbitmq()
        workdir = tmp_path_factory.mktemp(folder)
        extra = env(workdir) if env is not None else None
        with running_pipeline(
            broker, redis_server, sandbox_server, workdir, extra_env=extra, **options
        ) as running:
            yield running

    return fixture


pipeline = module_pipeline("pipeline")
# The pipeline on RabbitMQ only (quorum queues, the default).
pipeline_rabbitmq = module_pipeline(
    "pipeline-rabbitmq", broker="rabbitmq", name="pipeline_rabbitmq"
)


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def pipeline_any_broker(
    request: pytest.FixtureRequest,
    redis_server: EmbeddedRedis,
    sandbox_server: SandboxServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    """The same pipeline on Redis and on RabbitMQ.

    RabbitMQ runs on CI's machine; there its absence is a failure. Elsewhere
    the RabbitMQ half is skipped with the reason shown.
    """
    if request.param == "rabbitmq":
        require_rabbitmq()
    workdir = tmp_path_factory.mktemp(f"pipeline-{request.param}")
    with running_pipeline(request.param, redis_server, sandbox_server, workdir) as running:
        yield running


def require_rabbitmq() -> None:
    """RabbitMQ runs on CI's machine: there its absence fails; elsewhere it skips, saying why."""
    if not rabbitmq_reachable():
        message = f"RabbitMQ not reachable at {RABBITMQ_URL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def delete_broker_entities(url: str, queues: Sequence[str], exchanges: Sequence[str] = ()) -> None:
    """Delete what one test run declared on the shared RabbitMQ server.

    Deleting the jobs queue's exchange also removes its binding to Celery's
    delayed-delivery exchange. Celery's delay queues (``celery_delayed_*``) are
    shared by every Celery app on the server and stay.
    """
    with Connection(url) as conn:
        channel = conn.channel()
        for name in queues:
            channel.queue_delete(name)
        for name in exchanges:
            channel.exchange_delete(name)


@pytest.fixture
def live(pipeline: Pipeline, sandbox: SandboxServer, redis_url: str) -> Pipeline:
    """The module's pipeline with a clean Redis and sandboxes configured like the demo."""
    demo.configure_sandbox(sandbox)
    return pipeline


@pytest.fixture
def live_any(pipeline_any_broker: Pipeline, sandbox: SandboxServer, redis_url: str) -> Pipeline:
    """Like `live`, once per broker, with an empty results queue (RabbitMQ keeps it)."""
    demo.configure_sandbox(sandbox)
    drain(pipeline_any_broker.broker_url, pipeline_any_broker.results_queue)
    return pipeline_any_broker


@pytest.fixture
def live_rabbitmq(pipeline_rabbitmq: Pipeline, sandbox: SandboxServer, redis_url: str) -> Pipeline:
    """Like `live_any`, on RabbitMQ only."""
    demo.configure_sandbox(sandbox)
    drain(pipeline_rabbitmq.broker_url, pipeline_rabbitmq.results_queue)
    return pipeline_rabbitmq
