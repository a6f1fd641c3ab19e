"""SandboxServer: lifecycle, prefixes, base URLs, quiet logging, concurrency."""

from __future__ import annotations

import logging
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from worker.local.sandbox import ENGINE_NAMES, SandboxServer

from .helpers import TIMEOUT, client_for


def test_engine_names() -> None:
    assert ENGINE_NAMES == ("camunda8", "camunda7", "processmaker4", "blueworks", "tas")


def test_single_engine_is_served_at_the_root() -> None:
    with SandboxServer("camunda8", camunda8_api_version="8.6") as sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:") and sandbox.port > 0
        assert sandbox.base_url("camunda8") == sandbox.url
        assert sandbox.token_url("camunda8") == sandbox.url + "/oauth/token"
        response = requests.post(sandbox.url + "/v2/process-instances",
                                 json={"processDefinitionId": "invoice"}, timeout=TIMEOUT)
        assert isinstance(response.json()["processInstanceKey"], int)  # 8.6 dialect
        assert sandbox.app("camunda8").count() == 1
        with pytest.raises(ValueError, match="not served"):
            sandbox.app("tas")


@pytest.mark.parametrize(("engine", "suffix"), [
    ("camunda8", ""), ("camunda7", "/engine-rest"), ("processmaker4", "/api/1.0"),
    ("blueworks", ""), ("tas", ""),
])
def test_base_urls_alone_and_together(sandbox: SandboxServer, engine: str, suffix: str) -> None:
    assert sandbox.base_url(engine) == f"{sandbox.url}/{engine}{suffix}"
    with SandboxServer(engine) as alone:
        assert alone.base_url(engine) == alone.url + suffix
        client = client_for(alone, engine)
        assert client.start().status_code in (200, 201)
        assert requests.get(alone.url + "/_sandbox/stats", timeout=TIMEOUT).json()[
            "start_requests"] == 1


def test_token_urls(sandbox: SandboxServer) -> None:
    assert sandbox.token_url("processmaker4") == f"{sandbox.url}/processmaker4/oauth/token"
    assert sandbox.token_url("blueworks") == f"{sandbox.url}/blueworks/oauth/token"
    with pytest.raises(ValueError):
        sandbox.token_url("camunda7")


def test_a_subset_of_engines_and_unknown_paths() -> None:
    with SandboxServer(["camunda8", "tas"]) as sandbox:
        assert sandbox.engines == ("camunda8", "tas")
        assert requests.get(sandbox.url + "/nowhere", timeout=TIMEOUT).status_code == 404
        unmatched = requests.get(sandbox.base_url("camunda8") + "/v2/nothing", timeout=TIMEOUT)
        assert unmatched.status_code == 404
        assert unmatched.headers["Content-Type"] == "application/problem+json"
        assert sandbox.app("camunda8").stats()["requests"] == {"GET <unmatched>": 1}


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown engines"):
        SandboxServer(["camunda9"])
    with pytest.raises(ValueError):
        SandboxServer([])


def test_lifecycle() -> None:
    sandbox = SandboxServer("tas")
    with pytest.raises(RuntimeError):
        _ = sandbox.url
    assert sandbox.start() is sandbox
    port = sandbox.port
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
        pass
    with pytest.raises(RuntimeError):
        sandbox.start()
    sandbox.stop()
    sandbox.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


def test_quiet_by_default_even_when_dropping(sandbox: SandboxServer,
                                             caplog: pytest.LogCaptureFixture) -> None:
    client = client_for(sandbox, "camunda8")
    with caplog.at_level(logging.DEBUG, logger="werkzeug"):
        assert client.start().status_code == 200
        client.app.faults.script([{"drop": "after_commit"}])
        with pytest.raises(requests.ConnectionError):
            client.start()
    assert [r for r in caplog.records if r.name == "werkzeug"] == []


def test_concurrent_starts_get_distinct_ids(sandbox: SandboxServer) -> None:
    clients = [client_for(sandbox, engine) for engine in ENGINE_NAMES]
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda i: clients[i % 5].start(), range(40)))
    assert all(response.status_code in (200, 201) for response in responses)
    for client in clients:
        ids = [instance["id"] for instance in client.app.instances]
        assert len(ids) == 8 and len(set(ids)) == 8


def test_reset_keeps_deployments(sandbox: SandboxServer) -> None:
    tas = client_for(sandbox, "tas")
    tas.app.deploy(55, {"x": "text"})
    tas.app.auth.configure(type="bearer", token="t")
    tas.start(headers={"Authorization": "Bearer t"})
    sandbox.reset()
    assert tas.app.count() == 0 and tas.app.stats()["start_requests"] == 0
    assert tas.app.auth.settings.type == "none"
    assert tas.post("/api/plugins/api-extensions/start-process",
                    json={"processId": 55, "data": {"x": "y"}}).status_code == 200


def test_auth_control_route(sandbox: SandboxServer) -> None:
    pm = client_for(sandbox, "processmaker4")
    configured = pm.control("auth", {"type": "bearer", "token": "abc"})
    assert configured.json() == {"type": "bearer", "token": "abc", "token_ttl": 300,
                                 "require_on_behalf_of": False}
    assert pm.start().status_code == 401
    assert pm.control("auth", {"type": "bearer"}).status_code == 400
    assert pm.control("expire-tokens").json() == {"expired": 0}
    assert client_for(sandbox, "camunda8").control(
        "configure", {"api_version": "8.9"}).json()["api_version"] == "8.9"
    assert pm.control("configure", {"api_version": "8.9"}).status_code == 400
