"""A Camunda 8.9 cluster behind a private PKI, end to end through a real Celery worker.

The sandbox serves Camunda 8 over HTTPS with a certificate of a private CA and
requires client certificates of another; its token endpoint (same server)
checks an Entra-style scope; the business id uniqueness control is on. The
targets file names the PKI files relative to itself. Jobs pin a version by
tag, take another app's instance as a duplicate, and fail clearly without a
client certificate.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import worker
from tests.integration.conftest import Pipeline, running_pipeline
from tests.support.pki import Pki
from worker.local.embedded import EmbeddedRedis
from worker.local.sandbox import SandboxServer
from worker.local.sandbox.camunda8 import Camunda8App

SECRET = "pki-e2e-secret"
SCOPE = "api://startproc/.default"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki-e2e"))


@pytest.fixture(scope="module")
def https(pki: Pki) -> Iterator[SandboxServer]:
    with SandboxServer("camunda8", ssl_context=pki.server_context(),
                       camunda8_api_version="8.9") as server:
        yield server


def targets_file(folder: Path, https: SandboxServer) -> Path:
    base, token = https.base_url("camunda8"), https.token_url("camunda8")
    auth = f"""type = "oauth2"
token_url = "{token}"
client_id = "worker"
client_secret = "{SECRET}"
scope = "{SCOPE}"
token_cache = "redis"
"""
    path = folder / "targets.toml"
    path.write_text(f"""
[targets.secure]
engine = "camunda8"
api_version = "8.9"
base_url = "{base}"
tls = {{ ca_file = "server-ca.pem", client_cert = "client.pem", client_key = "client.key" }}
[targets.secure.auth]
{auth}
[targets.nocert]
engine = "camunda8"
api_version = "8.9"
base_url = "{base}"
tls = {{ ca_file = "server-ca.pem" }}
[targets.nocert.auth]
{auth}""", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pipeline(
    redis_server: EmbeddedRedis, sandbox_server: SandboxServer, https: SandboxServer,
    pki: Pki, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("pki-pipeline")
    env = {"STARTPROC_TARGETS": str(targets_file(pki.folder, https))}
    with running_pipeline("redis", redis_server, sandbox_server, workdir, extra_env=env) as live:
        yield live


@pytest.fixture
def c8(pipeline: Pipeline, https: SandboxServer, redis_url: str) -> Iterator[Camunda8App]:
    app = https.app("camunda8")
    assert isinstance(app, Camunda8App)
    app.reset()
    app.configure(api_version="8.9", business_id_unique=True)
    app.auth.configure(type="oauth2", client_id="worker", client_secret=SECRET, scope=SCOPE)
    yield app
    app.reset()


def test_a_job_pinned_by_version_tag_is_started_over_mutual_tls(
    pipeline: Pipeline, c8: Camunda8App
) -> None:
    job_id = worker.enqueue({"target": "secure", "process": "order-process",
                             "business_key": "P-1", "options": {"version_tag": "2.0"}})
    result = pipeline.wait(job_id)
    assert result.status == "created", result.error
    [instance] = c8.instances
    assert (instance["id"], instance["version"], instance["businessId"]) == (
        result.instance_id, 3, "P-1")
    assert c8.stats()["token_requests"] == 1  # scope accepted, token over mutual TLS


def test_another_apps_instance_is_the_jobs_duplicate_when_asked(
    pipeline: Pipeline, c8: Camunda8App, https: SandboxServer, pki: Pki
) -> None:
    client = requests.Session()
    client.trust_env = False  # REQUESTS_CA_BUNDLE would replace the private CA
    client.verify, client.cert = str(pki.ca_file), (str(pki.client_cert), str(pki.client_key))
    token = client.post(https.token_url("camunda8"), data={
        "grant_type": "client_credentials", "client_id": "worker", "client_secret": SECRET,
        "scope": SCOPE}, timeout=5).json()["access_token"]
    other = client.post(https.base_url("camunda8") + "/v2/process-instances", json={
        "processDefinitionId": "order-process", "businessId": "P-2"},
        headers={"Authorization": f"Bearer {token}"}, timeout=5).json()["processInstanceKey"]
    job_id = worker.enqueue({"target": "secure", "process": "order-process",
                             "business_key": "P-2", "options": {"on_duplicate":
                                                                "return_existing"}})
    result = pipeline.wait(job_id)
    assert (result.status, result.instance_id, result.error) == ("duplicate", other, None)
    assert c8.count() == 1


def test_without_the_client_certificate_the_job_fails_saying_so(
    pipeline: Pipeline, c8: Camunda8App
) -> None:
    job_id = worker.enqueue({"target": "nocert", "process": "order-process"})
    result = pipeline.wait(job_id)
    assert result.status == "failed" and result.error is not None
    assert result.error.kind == "permanent"
    assert "the server requires a client certificate" in result.error.message
    assert c8.stats()["requests"] == {} and c8.count() == 0
