"""A real worker starts instances in Operaton and CIB seven through ``engine = "camunda7"``.

The whole stack as a user runs it: the demo's targets file (its ``invoices``
target is a Camunda 7 one), a worker process, the sandbox answering as each
fork under its own ``/engine-rest`` root. Nothing fork-specific is configured.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import worker
from tests.integration.conftest import Pipeline, running_pipeline
from worker.local import demo
from worker.local.embedded import EmbeddedRedis
from worker.local.sandbox import SandboxServer


@pytest.fixture(scope="module", params=["operaton", "cibseven"])
def fork_pipeline(
    request: pytest.FixtureRequest,
    redis_server: EmbeddedRedis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    with SandboxServer(camunda7_product=request.param) as sandbox:
        demo.configure_sandbox(sandbox)
        workdir = tmp_path_factory.mktemp(f"fork-{request.param}")
        with running_pipeline("redis", redis_server, sandbox, workdir) as pipeline:
            yield pipeline


def test_a_worker_starts_in_the_fork_once_per_key(fork_pipeline: Pipeline) -> None:
    app = fork_pipeline.sandbox.app("camunda7")
    base = fork_pipeline.sandbox.base_url("camunda7")
    assert base.endswith("/engine-rest")
    key = f"F-{fork_pipeline.log_dir.parent.name}"  # one ledger for both forks: a key each
    job = {"target": "invoices", "process": "invoice", "business_key": key}
    by_key = worker.enqueue(job)
    result = fork_pipeline.wait(by_key)
    assert result.status == "created", result
    assert result.engine == "camunda7"
    assert [i["id"] for i in app.instances] == [result.instance_id]
    again = fork_pipeline.wait(worker.enqueue(job))
    assert again.status == "duplicate" and again.instance_id == result.instance_id
    assert app.count() == 1
