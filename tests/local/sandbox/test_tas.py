"""Syca TAS emulator over real HTTP: start-process, atomic validation, bearer auth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .helpers import EngineClient

START = "/api/plugins/api-extensions/start-process"


@pytest.fixture
def tas(client: Callable[[str], EngineClient]) -> EngineClient:
    return client("tas")


def test_seed_example_creates_a_case(tas: EngineClient) -> None:
    response = tas.post(START, json={"processId": 27, "data": {
        "processVariable1": "value1", "processVariable2": "value2",
        "_isCaseCreatedByAPI": "true", "amount": 100, "dueDate": "2025-01-01",
        "priority": "high"}})
    assert response.status_code == 200
    body = response.json()
    assert body["result"] is True and isinstance(body["iprocId"], int)
    [stored] = tas.app.instances
    assert stored["id"] == str(body["iprocId"]) and stored["processId"] == 27
    assert stored["variables"]["amount"] == 100


def test_data_may_be_empty(tas: EngineClient) -> None:
    assert tas.post(START, json={"processId": 31, "data": {}}).status_code == 200
    assert tas.post(START, json={"processId": 31}).status_code == 200


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"processId": 99, "data": {}}, 404, "PROCESS_NOT_FOUND"),
    ({"processId": "27", "data": {}}, 400, "INVALID_PROCESS_ID"),
    ({"processId": True, "data": {}}, 400, "INVALID_PROCESS_ID"),
    ({"data": {}}, 400, "INVALID_PROCESS_ID"),
    ({"processId": 27, "data": [1]}, 400, "INVALID_BODY"),
    ({"processId": 27, "data": {}, "extra": 1}, 400, "INVALID_BODY"),
    ({"processId": 27, "data": {"nope": "x"}}, 400, "UNKNOWN_VARIABLE"),
    ({"processId": 27, "data": {"amount": "100"}}, 400, "INVALID_VALUE"),
    ({"processId": 27, "data": {"amount": True}}, 400, "INVALID_VALUE"),
    ({"processId": 27, "data": {"processVariable1": 5}}, 400, "INVALID_VALUE"),
    ({"processId": 27, "data": {"processVariable1": {"a": 1}}}, 400, "INVALID_VALUE"),
    ({"processId": 27, "data": {"processVariable1": ["a"]}}, 400, "INVALID_VALUE"),
    ({"processId": 27, "data": {"processVariable1": None}}, 400, "INVALID_VALUE"),
    ({"processId": 27, "data": {"dueDate": "2025-02-30"}}, 400, "INVALID_DATE"),
    ({"processId": 27, "data": {"dueDate": "01.01.2025"}}, 400, "INVALID_DATE"),
    ({"processId": 27, "data": {"dueDate": 20250101}}, 400, "INVALID_VALUE"),
    ({"processId": 27, "data": {"priority": "urgent"}}, 400, "INVALID_LOV_VALUE"),
    ([1], 400, "INVALID_BODY"),
])
def test_invalid_input_creates_nothing(tas: EngineClient, body: Any, status: int,
                                       code: str) -> None:
    response = tas.post(START, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert tas.app.count() == 0


def test_error_is_atomic_even_when_other_fields_are_valid(tas: EngineClient) -> None:
    response = tas.post(START, json={"processId": 27, "data": {
        "processVariable1": "ok", "priority": "urgent"}})
    assert response.json()["error"]["field"] == "priority"
    assert tas.app.count() == 0


def test_bearer_auth(tas: EngineClient) -> None:
    tas.app.auth.configure(type="bearer", token="acc3ss")
    denied = tas.start()
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "UNAUTHORIZED"
    allowed = tas.post(START, json={"processId": 27, "data": {}},
                       headers={"Authorization": "Bearer acc3ss"})
    assert allowed.status_code == 200
    assert tas.app.count() == 1


def test_deploy_template(tas: EngineClient) -> None:
    deployed = tas.control("deploy", {"process_id": 40, "name": "Leave",
                                      "fields": {"days": "number", "kind": {"lov": ["a", "b"]},
                                                 "from": "date"}}).json()
    assert deployed["fields"] == {"days": "number", "kind": ["a", "b"], "from": "date"}
    ok = tas.post(START, json={"processId": 40, "data": {"days": 2.5, "kind": "b",
                                                         "from": "2026-03-01"}})
    assert ok.status_code == 200
    assert tas.control("deploy", {"process_id": 41, "fields": {"x": "blob"}}).status_code == 400
    assert tas.post(START, json={"processId": 40, "data": {"kind": "c"}}).status_code == 400
