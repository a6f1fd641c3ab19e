"""Camunda 8.9 business id uniqueness end to end: a real Celery worker, Redis, the sandbox.

A target on the 8.9 API (OAuth2, as the demo's) beside the demo targets; the
sandbox's Camunda 8 emulator enforces one active instance per business id
for each test and is put back to its defaults after it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

import worker
from tests.integration.conftest import Pipeline, running_pipeline
from tests.support.failover import default_camunda8, enforce_business_ids, lose_recent_writes
from tests.support.service import drain
from worker.local import demo
from worker.local.embedded import EmbeddedRedis
from worker.local.sandbox import SandboxServer
from worker.local.sandbox.camunda8 import Camunda8App

TARGET = "orders89"


def targets_with_89(sandbox: SandboxServer, path: Path) -> Path:
    c8 = sandbox.base_url("camunda8")
    path.write_text(
        demo.targets_toml(sandbox)
        + f"""
[targets.{TARGET}]
engine = "camunda8"
api_version = "8.9"
base_url = "{c8}"
[targets.{TARGET}.auth]
type = "oauth2"
token_url = "{c8}/oauth/token"
client_id = "worker"
client_secret = "${{{demo.SECRET_VAR}}}"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def pipeline(
    redis_server: EmbeddedRedis,
    sandbox_server: SandboxServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("business-id")
    targets = targets_with_89(sandbox_server, workdir / "targets-89.toml")
    env = {"STARTPROC_TARGETS": str(targets)}
    with running_pipeline("redis", redis_server, sandbox_server, workdir, extra_env=env) as running:
        yield running


@pytest.fixture
def live89(pipeline: Pipeline, sandbox: SandboxServer, redis_url: str) -> Iterator[Camunda8App]:
    demo.configure_sandbox(sandbox)
    app = sandbox.app("camunda8")
    assert isinstance(app, Camunda8App)
    enforce_business_ids(app)
    yield app
    default_camunda8(app)


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"business_key": "E-1"}, f"{TARGET}:order-process:E-1"),
        ({"idempotency_key": "e2e-no-business-key"}, "e2e-no-business-key"),
    ],
    ids=["business key", "only an idempotency key"],
)
def test_a_redelivered_job_whose_ledger_entry_was_lost_gets_its_first_instance(
    pipeline: Pipeline, live89: Camunda8App, redis_url: str, fields: dict[str, str], key: str
) -> None:
    """A failover took back the ledger entry and the result: the worker sends again,
    the engine refuses (409), and the instance holding the business id is ours."""
    job_id = f"e2e-{uuid.uuid4().hex[:8]}"
    job = {"target": TARGET, "process": "order-process", "job_id": job_id, **fields}
    worker.enqueue(job)
    first = pipeline.wait(job_id)
    assert first.status == "created"
    lose_recent_writes(redis.Redis.from_url(redis_url), TARGET, key, job_id)
    drain(pipeline.broker_url, pipeline.results_queue)
    worker.enqueue(job)
    again = pipeline.wait(job_id)
    stats = live89.stats()  # (a token cached by an earlier test may have had one 401)
    assert stats["start_requests"] - stats["unauthorized"] == 2  # asked twice...
    assert again.status == "created", again.error
    assert again.instance_id == first.instance_id  # ...and started one instance
    assert live89.count() == 1
    [published] = drain(pipeline.broker_url, pipeline.results_queue)
    assert published["instance_id"] == first.instance_id


def test_a_business_id_held_by_another_app_is_a_conflict_naming_its_instance(
    pipeline: Pipeline, live89: Camunda8App, sandbox: SandboxServer
) -> None:
    root = sandbox.base_url("camunda8")
    token = requests.post(
        f"{root}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "worker",
              "client_secret": demo.DEMO_SECRET},
        timeout=5,
    ).json()["access_token"]
    other = requests.post(
        f"{root}/v2/process-instances",
        json={"processDefinitionId": "order-process", "businessId": "E-2"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    ).json()["processInstanceKey"]
    job_id = worker.enqueue({"target": TARGET, "process": "order-process", "business_key": "E-2"})
    result = pipeline.wait(job_id)
    assert result.status == "failed" and result.error is not None
    assert result.error.kind == "conflict" and result.error.existing_instance_id == other
    published = [m for m in drain(pipeline.broker_url, pipeline.results_queue)
                 if m["job_id"] == job_id]
    assert [m["error"]["existing_instance_id"] for m in published] == [other]
    assert json.dumps(published).count(demo.DEMO_SECRET) == 0
    assert live89.count() == 1
