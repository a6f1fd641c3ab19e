"""Blueworks Live emulator over real HTTP: LaunchInstance, validation, Service ID mode."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from .helpers import EngineClient

LAUNCH = "/scr/api/LaunchInstance?version=20110917"
SEED_APP = {"subject": "New for test.", "id": "5f500e12a00ee", "details": "my sample details",
            "mailOnCompletion": False, "attachments": [],
            "tasks": [{"name": "task1", "id": "5f501e134ae2f", "assignedTo": "7f0002",
                       "approvalStep": False}]}


@pytest.fixture
def bw(client: Callable[[str], EngineClient]) -> EngineClient:
    return client("blueworks")


def launch(bw: EngineClient, app: dict[str, Any], path: str = LAUNCH,
           **kwargs: Any) -> requests.Response:
    return bw.post(path, data={"instance": json.dumps({"app": app})}, **kwargs)


def test_seed_example_launches_with_seed_shaped_body(bw: EngineClient) -> None:
    response = launch(bw, SEED_APP, headers={"Accept": "application/json"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"work", "app", "version", "users"}
    work = body["work"]
    assert len(work["id"]) == 13 and work["appId"] == "5f500e12a00ee"
    assert work["runtimeVersion"][1] == work["id"]
    assert work["subject"] == "New for test." and work["details"] == "my sample details"
    assert work["name"] == "ProcessApp with multiple tasks A - New for test."
    assert work["status"] == "Active" and work["startedBy"] == "7f0002"
    assert work["tasks"] == [{"status": "NotStarted", "assignedTo": "7f0002", "name": "task1",
                              "id": "5f501e134ae2f", "approvalStep": False}]
    assert isinstance(work["startedAt"], int)
    assert body["app"]["type"] == "workflow" and body["version"] == "20110917"
    assert body["users"] == [{"avatarId": "5f500e1260203", "name": "admin", "id": "7f0002"}]
    [stored] = bw.app.instances
    assert stored["id"] == work["id"] and stored["subject"] == "New for test."


def test_instance_as_query_parameter(bw: EngineClient) -> None:
    instance = json.dumps({"app": {"id": "5f500e12a00ee", "subject": "q", "attachments": []}})
    response = bw.post(LAUNCH, params={"instance": instance})
    assert response.status_code == 200
    assert response.json()["work"]["tasks"][0]["id"] == "5f501e134ae2f"  # the app's tasks


@pytest.mark.parametrize(("app", "path"), [
    ({**SEED_APP, "id": "unknown"}, LAUNCH),
    ({k: v for k, v in SEED_APP.items() if k != "id"}, LAUNCH),
    ({**SEED_APP, "subject": " "}, LAUNCH),
    ({k: v for k, v in SEED_APP.items() if k != "subject"}, LAUNCH),
    ({k: v for k, v in SEED_APP.items() if k != "attachments"}, LAUNCH),
    ({**SEED_APP, "attachments": [{"id": "nope"}]}, LAUNCH),
    ({**SEED_APP, "tasks": [{"name": "t", "id": "nope"}]}, LAUNCH),
    ({**SEED_APP, "tasks": [{"id": "5f501e134ae2f"}]}, LAUNCH),
    ({**SEED_APP, "tasks": [{"name": "t", "assignedTo": "ghost"}]}, LAUNCH),
    ({**SEED_APP, "tasks": [{"name": "t", "dueDateExpression": "2026-01-01"}]}, LAUNCH),
    ({**SEED_APP, "mailOnCompletion": "no"}, LAUNCH),
    (SEED_APP, "/scr/api/LaunchInstance?version=2011"),
    (SEED_APP, "/scr/api/LaunchInstance"),
])
def test_invalid_launch_is_400(bw: EngineClient, app: dict[str, Any], path: str) -> None:
    response = launch(bw, app, path)
    assert response.status_code == 400, response.text
    assert response.json()["status"] == 400 and response.json()["error"]
    assert bw.app.count() == 0


@pytest.mark.parametrize("data", [{}, {"instance": "{not json"}, {"instance": '{"x": 1}'}])
def test_missing_or_malformed_instance_is_400(bw: EngineClient, data: dict[str, str]) -> None:
    assert bw.post(LAUNCH, data=data).status_code == 400


def test_new_task_without_id_gets_one(bw: EngineClient) -> None:
    app = {**SEED_APP, "tasks": [{"name": "extra", "assignedTo": "7f0002",
                                  "dueDateExpression": "2026/01/31"}]}
    task = launch(bw, app).json()["work"]["tasks"][0]
    assert task["name"] == "extra" and task["id"]


def test_oauth2_client_credentials(bw: EngineClient) -> None:
    bw.app.auth.configure(type="oauth2", client_id="svc", client_secret="pw")
    denied = launch(bw, SEED_APP)
    assert denied.status_code == 401
    assert bw.token(grant_type="client_credentials", client_id="svc",
                    client_secret="bad").status_code == 401
    token = bw.token(grant_type="client_credentials", client_id="svc", client_secret="pw").json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert launch(bw, SEED_APP, headers=headers).status_code == 200
    bw.app.auth.expire_tokens()
    assert launch(bw, SEED_APP, headers=headers).status_code == 401


def test_service_id_needs_known_on_behalf_of_user(bw: EngineClient) -> None:
    bw.app.auth.configure(type="oauth2", client_id="svc", client_secret="pw",
                          require_on_behalf_of=True)
    token = bw.token(grant_type="client_credentials", client_id="svc", client_secret="pw").json()
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    missing = launch(bw, SEED_APP, headers=auth)
    assert missing.status_code == 400 and "X-On-Behalf-Of" in missing.json()["error"]
    unknown = launch(bw, SEED_APP, headers={**auth, "X-On-Behalf-Of": "ghost@domain.com"})
    assert unknown.status_code == 401
    ok = launch(bw, SEED_APP, headers={**auth, "X-On-Behalf-Of": "user_name@domain.com"})
    assert ok.status_code == 200 and ok.json()["work"]["startedBy"] == "7f0002"
    assert bw.app.instances[0]["on_behalf_of"] == "user_name@domain.com"
    assert bw.app.count() == 1


def test_deploy_app_with_attachments_and_users(bw: EngineClient) -> None:
    bw.app.add_user("8a0001", "jane@domain.com", "Jane")
    deployed = bw.control("deploy", {"app_id": "abc123", "name": "Hiring",
                                     "tasks": {"t1": "Interview"}, "attachments": ["f1"]}).json()
    assert deployed["tasks"] == {"t1": "Interview"}
    app = {"id": "abc123", "subject": "Hire", "attachments": [{"id": "f1"}],
           "tasks": [{"id": "t1", "name": "Interview", "assignedTo": "8a0001"}]}
    body = launch(bw, app, headers={"X-On-Behalf-Of": "jane@domain.com"}).json()
    assert body["work"]["startedBy"] == "8a0001"
    assert body["work"]["attachments"] == [{"id": "f1"}]
    assert {user["id"] for user in body["users"]} == {"8a0001"}
