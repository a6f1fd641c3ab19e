"""Camunda 7 emulator over real HTTP: start routes, typed variables, errors, look-ups, auth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .helpers import EngineClient


@pytest.fixture
def c7(client: Callable[[str], EngineClient]) -> EngineClient:
    return client("camunda7")


def test_base_url_is_engine_rest(c7: EngineClient) -> None:
    assert c7.base.endswith("/camunda7/engine-rest")
    assert c7.get("/version").json() == {"version": "7.24.0"}


def test_start_by_key_latest_version_body_as_seed(c7: EngineClient) -> None:
    response = c7.post("/process-definition/key/invoice/start", json={
        "variables": {"amount": {"value": 30, "type": "Integer"},
                      "approver": {"value": "demo", "type": "String"}},
        "businessKey": "A-17"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"links", "id", "definitionId", "businessKey", "caseInstanceId",
                         "tenantId", "ended", "suspended"}
    assert body["definitionId"].startswith("invoice:2:")
    assert body["businessKey"] == "A-17" and body["tenantId"] is None
    assert body["ended"] is False and body["suspended"] is False
    assert body["links"] == [{"method": "GET", "rel": "self",
                              "href": f"{c7.base}/process-instance/{body['id']}"}]
    [stored] = c7.app.instances
    assert stored["id"] == body["id"] and stored["business_key"] == "A-17"
    assert stored["variables"] == {"amount": 30, "approver": "demo"}
    assert stored["version"] == 2


def test_empty_body_is_allowed(c7: EngineClient) -> None:
    assert c7.post("/process-definition/key/loan-approval/start").status_code == 200
    assert c7.post("/process-definition/key/loan-approval/start", json={}).status_code == 200


def test_with_variables_in_return(c7: EngineClient) -> None:
    response = c7.post("/process-definition/key/invoice/start", json={
        "variables": {"a": {"value": "x", "type": "String"},
                      "b": {"value": True, "type": "Boolean", "valueInfo": {"transient": True}},
                      "n": {"value": "30", "type": "Integer"}},
        "withVariablesInReturn": True})
    assert response.json()["variables"] == {
        "a": {"type": "String", "value": "x", "valueInfo": {}},
        "b": {"type": "Boolean", "value": True, "valueInfo": {"transient": True}},
        "n": {"type": "Integer", "value": 30, "valueInfo": {}}}


def test_start_by_tenant_and_by_id(c7: EngineClient) -> None:
    tenant = c7.post("/process-definition/key/invoice/tenant-id/acme/start", json={})
    assert tenant.status_code == 200 and tenant.json()["tenantId"] == "acme"
    definition_id = tenant.json()["definitionId"]
    by_id = c7.post(f"/process-definition/{definition_id}/start", json={})
    assert by_id.status_code == 200
    assert by_id.json()["definitionId"] == definition_id
    assert by_id.json()["tenantId"] == "acme"


@pytest.mark.parametrize(("path", "message"), [
    ("/process-definition/key/nope/start",
     "No matching process definition with key: nope and no tenant-id"),
    ("/process-definition/key/loan-approval/tenant-id/acme/start",
     "No matching process definition with key: loan-approval and tenant-id: acme"),
])
def test_unknown_key_is_404_rest_exception(c7: EngineClient, path: str, message: str) -> None:
    response = c7.post(path, json={})
    assert response.status_code == 404
    assert response.json() == {"type": "RestException", "message": message, "code": None}
    assert c7.app.count() == 0


def test_unknown_definition_id_is_500(c7: EngineClient) -> None:
    response = c7.post("/process-definition/nope:1:x/start", json={})
    assert response.status_code == 500
    assert response.json()["type"] == "RestException"
    assert response.json()["message"].startswith("Cannot instantiate process definition nope:1:x")


def start_with(c7: EngineClient, variable: dict[str, Any]) -> Any:
    return c7.post("/process-definition/key/invoice/start", json={"variables": {"v": variable}})


def test_bad_integer_message_as_engine(c7: EngineClient) -> None:
    response = start_with(c7, {"value": "abc", "type": "Integer"})
    assert response.status_code == 400
    definition_id = next(d["id"] for d in c7.app.definitions
                         if d["key"] == "invoice" and d["version"] == 2 and not d["tenantId"])
    assert response.json() == {
        "type": "InvalidRequestException", "code": None,
        "message": f"Cannot instantiate process definition {definition_id}: Cannot convert "
                   "value 'abc' of type 'Integer' to java type java.lang.Integer"}
    assert c7.app.count() == 0


@pytest.mark.parametrize("variable", [
    {"value": 2**31, "type": "Integer"},
    {"value": 1.5, "type": "Integer"},
    {"value": True, "type": "Long"},
    {"value": 40000, "type": "Short"},
    {"value": "x", "type": "Double"},
    {"value": "yes", "type": "Boolean"},
    {"value": "2026-01-02", "type": "Date"},
    {"value": "2026-13-02T03:04:05.000+0000", "type": "Date"},
    {"value": {"a": 1}, "type": "Json"},
    {"value": [1], "type": "Xml"},
    {"value": {"a": 1}, "type": "Object",
     "valueInfo": {"objectTypeName": "x", "serializationDataFormat": "application/json"}},
    {"value": "{}", "type": "Object"},
    {"value": "!!", "type": "Bytes"},
    {"value": {"a": 1}, "type": "String"},
    {"value": 1, "type": "Frobnicate"},
    {"value": 1, "type": "Integer", "valueInfo": "x"},
    "not an object",
])
def test_invalid_variables_are_400(c7: EngineClient, variable: Any) -> None:
    response = start_with(c7, variable)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "InvalidRequestException"
    assert response.json()["message"].startswith("Cannot instantiate process definition invoice:")
    assert c7.app.count() == 0


@pytest.mark.parametrize(("variable", "stored"), [
    ({"value": 2**31, "type": "Long"}, 2**31),
    ({"value": 7, "type": "integer"}, 7),
    ({"value": 3, "type": "Double"}, 3.0),
    ({"value": "true", "type": "Boolean"}, True),
    ({"value": 12, "type": "String"}, "12"),
    ({"value": "2026-01-02T03:04:05.000+0000", "type": "Date"}, "2026-01-02T03:04:05.000+0000"),
    ({"value": '{"a": 1}', "type": "Json"}, {"a": 1}),
    ({"value": None, "type": "Json"}, None),
    ({"value": "<a/>", "type": "Xml"}, "<a/>"),
    ({"value": '{"a":1}', "type": "Object",
      "valueInfo": {"objectTypeName": "java.util.HashMap",
                    "serializationDataFormat": "application/json"}}, '{"a":1}'),
    ({"value": "ignored", "type": "Null"}, None),
    ({"value": "aGk=", "type": "Bytes"}, "aGk="),
    ({"value": 5}, 5),
    ({"value": 2**40}, 2**40),
    ({"value": "s"}, "s"),
    ({"value": {"a": 1}}, {"a": 1}),
])
def test_valid_variables(c7: EngineClient, variable: dict[str, Any], stored: Any) -> None:
    response = start_with(c7, variable)
    assert response.status_code == 200, response.text
    assert c7.app.instances[0]["variables"] == {"v": stored}


def test_inferred_types(c7: EngineClient) -> None:
    c7.post("/process-definition/key/invoice/start", json={"variables": {
        "i": {"value": 5}, "l": {"value": 2**40}, "d": {"value": 1.5}, "b": {"value": False}}})
    typed = c7.app.instances[0]["typed_variables"]
    assert {name: t["type"] for name, t in typed.items()} == {
        "i": "Integer", "l": "Long", "d": "Double", "b": "Boolean"}


@pytest.mark.parametrize("body", [
    {"businessKey": "x", "unknown": 1},
    {"businessKey": 5},
    {"variables": []},
    {"withVariablesInReturn": "yes"},
    [1],
])
def test_bad_body_is_400(c7: EngineClient, body: Any) -> None:
    response = c7.post("/process-definition/key/invoice/start", json=body)
    assert response.status_code == 400
    assert response.json()["type"] == "InvalidRequestException"


def test_runtime_and_history_lookups(c7: EngineClient) -> None:
    first = c7.start(businessKey="BK-1").json()
    second = c7.start(businessKey="BK-1").json()  # businessKey is not unique
    c7.post("/process-definition/key/loan-approval/start", json={"businessKey": "BK-1"})
    c7.app.complete(first["id"])

    runtime = c7.get("/process-instance",
                     params={"businessKey": "BK-1", "processDefinitionKey": "invoice"})
    assert [item["id"] for item in runtime.json()] == [second["id"]]
    assert runtime.json()[0]["definitionKey"] == "invoice"
    assert runtime.json()[0]["businessKey"] == "BK-1"
    history = c7.get("/history/process-instance",
                     params={"processInstanceBusinessKey": "BK-1",
                             "processDefinitionKey": "invoice"}).json()
    assert [item["id"] for item in history] == [first["id"], second["id"]]
    assert [item["state"] for item in history] == ["COMPLETED", "ACTIVE"]
    assert history[0]["endTime"] and history[1]["endTime"] is None
    assert history[0]["processDefinitionVersion"] == 2
    finished = c7.get("/history/process-instance", params={"finished": "true"}).json()
    assert [item["id"] for item in finished] == [first["id"]]
    assert c7.get("/process-instance/count", params={"businessKey": "BK-1"}).json() == {
        "count": 2}
    assert c7.get("/history/process-instance/count").json() == {"count": 3}
    assert c7.get(f"/process-instance/{second['id']}").json()["id"] == second["id"]
    gone = c7.get(f"/process-instance/{first['id']}")
    assert gone.status_code == 404 and gone.json()["type"] == "InvalidRequestException"
    assert len(c7.get("/process-instance", params={"maxResults": "1"}).json()) == 1
    assert c7.get("/process-instance", params={"maxResults": "x"}).status_code == 400


def test_variable_instance_lookups(c7: EngineClient) -> None:
    key = {"_startproc_key": {"value": "k-1", "type": "String"}}
    first = c7.start(businessKey="BK", variables=key).json()
    second = c7.start(businessKey="BK").json()
    c7.app.complete(first["id"])
    ids = f"{first['id']},{second['id']}"
    params = {"variableName": "_startproc_key", "processInstanceIdIn": ids}
    assert c7.get("/variable-instance", params=params).json() == []
    history = c7.get("/history/variable-instance", params=params).json()
    assert [(v["processInstanceId"], v["value"], v["type"]) for v in history] == [
        (first["id"], "k-1", "String")
    ]


def test_tenant_lookup(c7: EngineClient) -> None:
    c7.post("/process-definition/key/invoice/tenant-id/acme/start", json={"businessKey": "T"})
    c7.start(businessKey="T")
    acme = c7.get("/process-instance", params={"tenantIdIn": "acme"}).json()
    assert [item["tenantId"] for item in acme] == ["acme"]
    untenanted = c7.get("/process-instance", params={"withoutTenantId": "true"}).json()
    assert [item["tenantId"] for item in untenanted] == [None]


def test_basic_auth_401_has_no_body(c7: EngineClient) -> None:
    c7.app.auth.configure(type="basic", username="demo", password="demo")
    denied = c7.start(headers={"Authorization": "Basic ZGVtbzp3cm9uZw=="})
    assert denied.status_code == 401 and denied.content == b""
    assert denied.headers["WWW-Authenticate"] == 'Basic realm="default"'
    assert c7.get("/process-instance").status_code == 401
    allowed = c7.post("/process-definition/key/invoice/start", json={}, auth=("demo", "demo"))
    assert allowed.status_code == 200
    assert c7.get("/process-instance", auth=("demo", "demo")).status_code == 200


def test_scripted_500_codes_are_worded_as_engine(c7: EngineClient) -> None:
    c7.app.faults.script([{"status": 500, "code": 1}, {"status": 500, "code": 10000}])
    locking = c7.start()
    assert locking.status_code == 500
    assert locking.json()["code"] == 1 and locking.json()["type"] == "RestException"
    assert "updated by another transaction concurrently" in locking.json()["message"]
    assert locking.json()["message"].startswith("Cannot instantiate process definition invoice")
    deadlock = c7.start()
    assert deadlock.json()["code"] == 10000 and "Deadlock" in deadlock.json()["message"]
    assert c7.app.count() == 0
    assert c7.start().status_code == 200


def test_deploy_new_version(c7: EngineClient) -> None:
    deployed = c7.app.deploy("shipping")
    assert deployed["version"] == 1 and deployed["id"].startswith("shipping:1:")
    over_http = c7.control("deploy", {"key": "shipping"}).json()
    assert over_http["version"] == 2
    started = c7.post("/process-definition/key/shipping/start", json={}).json()
    assert started["definitionId"] == over_http["id"]
