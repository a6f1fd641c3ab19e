"""The sandbox keeps connections open like a real engine, and still drops and stops cleanly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from worker.local.sandbox.server import SandboxServer

START = {"processDefinitionId": "order-process", "variables": {"n": 1}}


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with SandboxServer("camunda8") as sandbox:
        yield sandbox


def start(session: requests.Session, sandbox: SandboxServer) -> requests.Response:
    url = sandbox.base_url("camunda8") + "/v2/process-instances"
    return session.post(url, json=START, timeout=10)


def connections(sandbox: SandboxServer) -> int:
    return len(sandbox._connections)


def test_one_connection_serves_many_requests(server: SandboxServer) -> None:
    with requests.Session() as session:
        statuses = [start(session, server).status_code for _ in range(5)]
        assert statuses == [200] * 5
        assert connections(server) == 1
        assert "close" not in start(session, server).headers.get("Connection", "")


def test_an_unread_request_body_does_not_spoil_the_next_request(server: SandboxServer) -> None:
    with requests.Session() as session:
        missing = session.post(server.url + "/nowhere", data=b"x" * 100_000, timeout=10)
        assert missing.status_code == 404
        assert start(session, server).status_code == 200
        assert connections(server) == 1


def test_a_dropped_connection_fails_that_request_only(server: SandboxServer) -> None:
    with requests.Session() as session:
        assert start(session, server).status_code == 200
        server.app("camunda8").faults.script([{"drop": "before_commit"}])
        with pytest.raises(requests.ConnectionError):
            start(session, server)
        assert start(session, server).status_code == 200  # a new connection


def test_stopping_ends_kept_alive_connections(server: SandboxServer) -> None:
    url = server.base_url("camunda8") + "/v2/process-instances"
    with requests.Session() as session:
        assert session.post(url, json=START, timeout=10).status_code == 200
        server.stop()
        with pytest.raises(requests.ConnectionError):
            session.post(url, json=START, timeout=10)
