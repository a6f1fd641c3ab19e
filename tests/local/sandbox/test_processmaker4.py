"""ProcessMaker 4 emulator over real HTTP: start events, errors, PMQL look-up, auth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .helpers import EngineClient


@pytest.fixture
def pm(client: Callable[[str], EngineClient]) -> EngineClient:
    return client("processmaker4")


def test_base_url_is_api_root(pm: EngineClient) -> None:
    assert pm.base.endswith("/processmaker4/api/1.0")


def test_start_event_creates_request_201(pm: EngineClient) -> None:
    response = pm.post("/process_events/1?event=node_1", json={"orderId": "A-1", "n": 2})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "process_id", "user_id", "status", "name", "initiated_at",
                         "created_at", "updated_at"}
    assert isinstance(body["id"], int)
    assert body["process_id"] == 1 and body["user_id"] == 1
    assert body["status"] == "ACTIVE" and body["name"] == "Onboarding"
    assert body["created_at"].endswith("+00:00")
    [stored] = pm.app.instances
    assert stored["id"] == str(body["id"]) and stored["variables"] == {"orderId": "A-1", "n": 2}
    assert stored["event"] == "node_1"


def test_include_data(pm: EngineClient) -> None:
    body = pm.post("/process_events/7?event=node_9&include=data", json={"x": 1}).json()
    assert body["data"] == {"x": 1} and body["name"] == "Expense"


def test_empty_body_is_empty_data(pm: EngineClient) -> None:
    assert pm.post("/process_events/1?event=node_1").status_code == 201
    assert pm.app.instances[0]["variables"] == {}


@pytest.mark.parametrize("path", [
    "/process_events/1",  # no event
    "/process_events/1?event=node_99",
    "/process_events/404?event=node_1",
    "/process_events/abc?event=node_1",
])
def test_not_found(pm: EngineClient, path: str) -> None:
    response = pm.post(path, json={})
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}
    assert pm.app.count() == 0


def test_node_that_is_not_a_start_event_is_500(pm: EngineClient) -> None:
    response = pm.post("/process_events/1?event=node_5", json={})
    assert response.status_code == 500
    assert pm.app.count() == 0


def test_process_the_user_cannot_start_is_403(pm: EngineClient) -> None:
    response = pm.post("/process_events/9?event=node_1", json={})
    assert response.status_code == 403
    assert response.json() == {"message": "This action is unauthorized."}


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"{broken"])
def test_body_that_is_not_an_object_is_422(pm: EngineClient, raw: bytes) -> None:
    response = pm.post("/process_events/1?event=node_1", data=raw,
                       headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    body = response.json()
    assert body["message"] and body["errors"] == {"data": ["The data must be an object."]}


def test_pmql_lookup(pm: EngineClient) -> None:
    a = pm.start(orderId="A-1", customer={"id": "C-9"}).json()
    pm.start(orderId="B-2")
    c = pm.post("/process_events/7?event=node_1", json={"orderId": "A-1", "amount": 5}).json()

    def ids(pmql: str, **params: str) -> list[int]:
        response = pm.get("/requests", params={"type": "all", "include": "data", "pmql": pmql,
                                               **params})
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["data"]]

    assert ids('data.orderId = "A-1"') == [a["id"], c["id"]]
    assert ids('data.orderId = "A-1" AND process_id = 7') == [c["id"]]
    assert ids('data.orderId = "A-1" and data.amount = 5') == [c["id"]]
    assert ids('data.amount = "5"') == [c["id"]]
    assert ids('data.customer.id = "C-9"') == [a["id"]]
    assert ids('data.orderId = "nope"') == []
    assert len(ids("")) == 3
    listing = pm.get("/requests", params={"pmql": 'data.orderId = "B-2"', "include": "data"})
    item = listing.json()["data"][0]
    assert item["data"] == {"orderId": "B-2"}
    assert listing.json()["meta"]["total"] == 1
    assert "data" not in pm.get("/requests").json()["data"][0]


def test_pmql_type_filters_completed(pm: EngineClient) -> None:
    first = pm.start().json()
    pm.start()
    pm.app.complete(str(first["id"]))
    in_progress = pm.get("/requests", params={"type": "in_progress"}).json()["data"]
    completed = pm.get("/requests", params={"type": "completed"}).json()["data"]
    assert len(in_progress) == 1 and [r["id"] for r in completed] == [first["id"]]
    assert completed[0]["status"] == "COMPLETED"


@pytest.mark.parametrize("pmql", [
    'data.orderId == "A"', "data.orderId = A", 'data.orderId = "A" OR id = 1',
    'data.orderId = "A" AND', 'name = "x"', 'data.orderId LIKE "A%"',
])
def test_bad_pmql_is_400(pm: EngineClient, pmql: str) -> None:
    response = pm.get("/requests", params={"type": "all", "pmql": pmql})
    assert response.status_code == 400
    assert response.json() == {"message": "Your PMQL contains invalid syntax."}


def test_paging_meta(pm: EngineClient) -> None:
    for _ in range(3):
        pm.start()
    body = pm.get("/requests", params={"per_page": "2", "page": "2"}).json()
    assert len(body["data"]) == 1
    assert body["meta"]["total"] == 3 and body["meta"]["last_page"] == 2


def test_show_request(pm: EngineClient) -> None:
    created = pm.start().json()
    assert pm.get(f"/requests/{created['id']}").json()["id"] == created["id"]
    assert pm.get("/requests/999999").status_code == 404


def test_personal_access_token(pm: EngineClient) -> None:
    pm.app.auth.configure(type="bearer", token="pat-123")
    denied = pm.start()
    assert denied.status_code == 401 and denied.json() == {"error": "Unauthenticated."}
    assert pm.get("/requests").status_code == 401
    allowed = pm.post("/process_events/1?event=node_1", json={},
                      headers={"Authorization": "Bearer pat-123"})
    assert allowed.status_code == 201


@pytest.mark.parametrize("grant", [
    {"grant_type": "password", "username": "admin", "password": "pw"},
    {"grant_type": "client_credentials"},
])
def test_oauth2_grants_at_root_token_url(pm: EngineClient, grant: dict[str, str]) -> None:
    pm.app.auth.configure(type="oauth2", client_id="7", client_secret="sec", username="admin",
                          password="pw")
    assert pm.root + "/api/1.0" == pm.base
    token = pm.token(client_id="7", client_secret="sec", **grant)
    assert token.status_code == 200, token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert pm.post("/process_events/1?event=node_1", json={}, headers=headers).status_code == 201
    pm.app.auth.expire_tokens()
    assert pm.post("/process_events/1?event=node_1", json={}, headers=headers).status_code == 401


def test_password_grant_with_wrong_password(pm: EngineClient) -> None:
    pm.app.auth.configure(type="oauth2", client_id="7", client_secret="sec", username="admin",
                          password="pw")
    response = pm.token(grant_type="password", client_id="7", client_secret="sec",
                        username="admin", password="nope")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_deploy_process(pm: EngineClient) -> None:
    deployed: dict[str, Any] = pm.control("deploy", {"process_id": 12, "name": "Hiring",
                                                     "start_events": ["start"]}).json()
    assert deployed["start_events"] == ["start"]
    assert pm.post("/process_events/12?event=start", json={}).json()["name"] == "Hiring"
    pm.app.deploy(13, "Locked", startable=False)
    assert pm.post("/process_events/13?event=node_1", json={}).status_code == 403
