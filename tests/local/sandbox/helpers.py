"""Test helpers shared by the sandbox tests: a tiny HTTP client per engine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests

from worker.local.sandbox.base import EngineApp

TIMEOUT = 5.0


@dataclass
class EngineClient:
    """Real HTTP against one engine of a running SandboxServer."""

    name: str
    root: str  # engine root: /_sandbox, /oauth/token
    base: str  # what a worker target's base_url would be
    app: Any  # the EngineApp subclass (Any: tests call engine-specific methods)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return requests.post(self.base + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return requests.get(self.base + path, **kwargs)

    def control(self, path: str, body: Any = None) -> requests.Response:
        if body is None and path in ("instances", "stats"):
            return requests.get(f"{self.root}/_sandbox/{path}", timeout=TIMEOUT)
        return requests.post(f"{self.root}/_sandbox/{path}", json=body or {}, timeout=TIMEOUT)

    def token(self, **form: str) -> requests.Response:
        return requests.post(f"{self.root}/oauth/token", data=form, timeout=TIMEOUT)

    def start(self, *, headers: dict[str, str] | None = None, timeout: float = TIMEOUT,
              **overrides: Any) -> requests.Response:
        """A valid start request for this engine (default deployments); overrides go in the body."""
        return VALID_START[self.name](self, overrides, {"headers": headers, "timeout": timeout})


Http = dict[str, Any]


def _camunda8(client: EngineClient, overrides: dict[str, Any], http: Http) -> requests.Response:
    body = {"processDefinitionId": "order-process", "variables": {"orderId": "A-1"}}
    return client.post("/v2/process-instances", json={**body, **overrides}, **http)


def _camunda7(client: EngineClient, overrides: dict[str, Any], http: Http) -> requests.Response:
    body = {"variables": {"amount": {"value": 30, "type": "Integer"}}, "businessKey": "A-1"}
    return client.post("/process-definition/key/invoice/start", json={**body, **overrides},
                       **http)


def _processmaker4(client: EngineClient, overrides: dict[str, Any],
                   http: Http) -> requests.Response:
    return client.post("/process_events/1?event=node_1", json={"orderId": "A-1", **overrides},
                       **http)


def _blueworks(client: EngineClient, overrides: dict[str, Any], http: Http) -> requests.Response:
    app = {"id": "5f500e12a00ee", "subject": "New for test.", "attachments": [], **overrides}
    return client.post("/scr/api/LaunchInstance?version=20110917",
                       data={"instance": json.dumps({"app": app})}, **http)


def _tas(client: EngineClient, overrides: dict[str, Any], http: Http) -> requests.Response:
    body = {"processId": 27, "data": {"processVariable1": "value1"}}
    return client.post("/api/plugins/api-extensions/start-process",
                       json={**body, **overrides}, **http)


VALID_START = {"camunda8": _camunda8, "camunda7": _camunda7, "processmaker4": _processmaker4,
               "blueworks": _blueworks, "tas": _tas}


def client_for(sandbox: Any, engine: str) -> EngineClient:
    app: EngineApp = sandbox.app(engine)
    return EngineClient(engine, sandbox.root_url(engine), sandbox.base_url(engine), app)
