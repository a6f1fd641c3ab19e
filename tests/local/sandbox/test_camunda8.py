"""Camunda 8 emulator over real HTTP: create, errors per version, search, auth, deploy."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from .helpers import EngineClient

CREATE = "/v2/process-instances"
SEARCH = "/v2/process-instances/search"


def problem(response: requests.Response) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == "about:blank"
    assert body["status"] == response.status_code
    return body


def test_create_by_id_uses_latest_version_and_string_keys(c8: EngineClient) -> None:
    response = c8.post(CREATE, json={"processDefinitionId": "order-process",
                                     "variables": {"orderId": "A-17", "amount": 12.5},
                                     "tags": ["business_key:A-17"], "operationReference": 7})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"processDefinitionKey", "processDefinitionId",
                         "processDefinitionVersion", "processInstanceKey", "tenantId",
                         "variables", "tags"}
    assert body["processDefinitionId"] == "order-process"
    assert body["processDefinitionVersion"] == 3
    assert isinstance(body["processInstanceKey"], str) and body["processInstanceKey"].isdigit()
    assert int(body["processInstanceKey"]) >= 2251799813685249
    assert isinstance(body["processDefinitionKey"], str)
    assert body["tenantId"] == "<default>"
    assert body["variables"] == {}
    assert body["tags"] == ["business_key:A-17"]
    [stored] = c8.app.instances
    assert stored["id"] == body["processInstanceKey"]
    assert stored["variables"] == {"orderId": "A-17", "amount": 12.5}
    assert stored["tags"] == ["business_key:A-17"]
    assert stored["tenant_id"] == "<default>"
    assert stored["operationReference"] == 7
    assert c8.app.count() == 1


def test_create_by_id_and_version_and_by_key(c8: EngineClient) -> None:
    first = c8.post(CREATE, json={"processDefinitionId": "order-process",
                                  "processDefinitionVersion": 1}).json()
    assert first["processDefinitionVersion"] == 1
    by_key = c8.post(CREATE, json={"processDefinitionKey": first["processDefinitionKey"]})
    assert by_key.status_code == 200
    assert by_key.json()["processDefinitionVersion"] == 1
    assert by_key.json()["processInstanceKey"] != first["processInstanceKey"]


def test_await_completion_returns_fetched_variables(c8: EngineClient) -> None:
    response = c8.post(CREATE, json={"processDefinitionId": "invoice", "awaitCompletion": True,
                                     "fetchVariables": ["a"], "requestTimeout": 1000,
                                     "variables": {"a": 1, "b": 2}})
    assert response.json()["variables"] == {"a": 1}
    assert c8.app.instances[0]["state"] == "COMPLETED"


@pytest.mark.parametrize(("body", "detail"), [
    ({"processDefinitionId": "nope"},
     "Expected to find process definition with process ID 'nope', but none found"),
    ({"processDefinitionId": "order-process", "processDefinitionVersion": 9},
     "Expected to find process definition with process ID 'order-process' and version '9', "
     "but none found"),
    ({"processDefinitionKey": "123"},
     "Expected to find process definition with key '123', but none found"),
    ({"processDefinitionId": "invoice", "tenantId": "other"},
     "Expected to find process definition with process ID 'invoice', but none found"),
])
def test_unknown_definition_is_404_not_found(c8: EngineClient, body: dict[str, Any],
                                             detail: str) -> None:
    response = c8.post(CREATE, json=body)
    assert response.status_code == 404
    assert problem(response) == {"type": "about:blank", "title": "NOT_FOUND", "status": 404,
                                 "detail": detail, "instance": "/v2/process-instances"}
    assert c8.app.count() == 0


@pytest.mark.parametrize("body", [
    {"processDefinitionId": "order-process", "businessId": "A-1"},  # 8.9 only
    {"processDefinitionId": "order-process", "bpmnProcessId": "x"},
    {"processDefinitionId": "order-process", "processDefinitionKey": "1"},
    {"variables": {}},
    {"processDefinitionKey": 2251799813684001},  # a number on 8.8
    {"processDefinitionKey": "abc"},
    {"processDefinitionKey": "2251799813684001", "processDefinitionVersion": 1},
    {"processDefinitionId": "order process"},
    {"processDefinitionId": "order-process", "processDefinitionVersion": "1"},
    {"processDefinitionId": "order-process", "variables": [1]},
    {"processDefinitionId": "order-process", "operationReference": 0},
    {"processDefinitionId": "order-process", "requestTimeout": -1},
    {"processDefinitionId": "order-process", "awaitCompletion": "yes"},
    {"processDefinitionId": "order-process", "startInstructions": [{"id": "x"}]},
    {"processDefinitionId": "order-process", "runtimeInstructions": [{"type": "X"}]},
    {"processDefinitionId": "order-process", "tags": [f"t{i}" for i in range(11)]},
    {"processDefinitionId": "order-process", "tags": ["a", "a"]},
    {"processDefinitionId": "order-process", "tags": ["1abc"]},
    {"processDefinitionId": "order-process", "tags": ["a b"]},
    {"processDefinitionId": "order-process", "tenantId": "bad tenant"},
    {"processDefinitionId": "order-process", "fetchVariables": [1]},
])
def test_invalid_request_is_400_invalid_argument(c8: EngineClient, body: dict[str, Any]) -> None:
    response = c8.post(CREATE, json=body)
    assert response.status_code == 400, response.text
    assert problem(response)["title"] == "INVALID_ARGUMENT"
    assert problem(response)["instance"] == "/v2/process-instances"
    assert c8.app.count() == 0


def test_unknown_field_detail_names_the_field(c8: EngineClient) -> None:
    response = c8.post(CREATE, json={"processDefinitionId": "order-process", "businessId": "x"})
    assert problem(response)["detail"] == "Request property [businessId] cannot be parsed"


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b""])
def test_body_that_is_not_an_object_is_400(c8: EngineClient, raw: bytes) -> None:
    response = c8.post(CREATE, data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert problem(response)["title"] == "INVALID_ARGUMENT"


def test_tags_at_limit_are_accepted(c8: EngineClient) -> None:
    tags = ["a", "B-1", "c_2", "d:3", "e.4", "f" * 100, "g", "h", "i", "j"]
    response = c8.start(tags=tags)
    assert response.status_code == 200
    assert response.json()["tags"] == tags


def test_version_8_9_accepts_business_id_and_can_enforce_uniqueness(c8: EngineClient) -> None:
    c8.app.configure_version("8.9")
    response = c8.start(businessId="order-17")
    assert response.status_code == 200
    assert response.json()["businessId"] == "order-17"
    assert c8.app.instances[0]["business_key"] == "order-17"
    assert c8.start(businessId="order-17").status_code == 200  # uniqueness off by default
    c8.app.configure(business_id_unique=True)
    clash = c8.start(businessId="order-17")
    assert clash.status_code == 409
    assert problem(clash)["title"] == "ALREADY_EXISTS"
    assert c8.start(businessId="order-18").status_code == 200
    by_key = c8.post(CREATE, json={"processDefinitionKey": response.json()["processDefinitionKey"],
                                   "processDefinitionVersion": 3})
    assert by_key.status_code == 200  # 8.9's by-key schema has processDefinitionVersion


def test_version_8_6_uses_number_keys_and_has_no_tags(c8: EngineClient) -> None:
    c8.app.configure_version("8.6")
    body = c8.start().json()
    assert isinstance(body["processInstanceKey"], int)
    assert isinstance(body["processDefinitionKey"], int)
    assert "tags" not in body
    assert c8.post(CREATE, json={"processDefinitionKey": body["processDefinitionKey"]}
                   ).status_code == 200
    assert c8.post(CREATE, json={"processDefinitionKey": str(body["processDefinitionKey"])}
                   ).status_code == 200
    assert c8.start(tags=["a"]).status_code == 400


def test_version_8_6_alpha_uses_seed_field_names(c8: EngineClient) -> None:
    c8.app.configure_version("8.6-alpha")
    response = c8.post(CREATE, json={"bpmnProcessId": "order-process", "version": 2,
                                     "variables": {"x": 1}})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"processKey", "bpmnProcessId", "version", "processInstanceKey",
                         "tenantId", "variables"}
    assert body["bpmnProcessId"] == "order-process" and body["version"] == 2
    assert isinstance(body["processInstanceKey"], int)
    assert c8.post(CREATE, json={"processDefinitionId": "order-process"}).status_code == 400
    assert c8.post(CREATE, json={"processDefinitionKey": body["processKey"]}).status_code == 200


def test_unknown_api_version_is_refused(c8: EngineClient) -> None:
    with pytest.raises(ValueError, match="api_version"):
        c8.app.configure_version("9.9")


def search(c8: EngineClient, criteria: dict[str, Any], **extra: Any) -> requests.Response:
    return c8.post(SEARCH, json={"filter": criteria, **extra})


def test_search_by_tags_variables_and_definition(c8: EngineClient) -> None:
    a = c8.start(variables={"orderId": "A-1", "n": 5}, tags=["k:A-1", "x"]).json()
    b = c8.start(variables={"orderId": "B-2"}, tags=["x"]).json()
    c8.post(CREATE, json={"processDefinitionId": "invoice", "variables": {"orderId": "A-1"}})

    def keys(criteria: dict[str, Any]) -> list[str]:
        response = search(c8, criteria)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["page"]["totalItems"] == len(body["items"])
        return [item["processInstanceKey"] for item in body["items"]]

    assert keys({"tags": ["k:A-1", "x"]}) == [a["processInstanceKey"]]
    assert keys({"tags": ["x"]}) == [a["processInstanceKey"], b["processInstanceKey"]]
    assert keys({"variables": [{"name": "orderId", "value": '"B-2"'}]}) == [b["processInstanceKey"]]
    assert keys({"variables": [{"name": "orderId", "value": "B-2"}]}) == []  # not serialized
    assert keys({"variables": [{"name": "n", "value": "5"}]}) == [a["processInstanceKey"]]
    assert len(keys({"variables": [{"name": "orderId", "value": '"A-1"'}]})) == 2
    assert keys({"variables": [{"name": "orderId", "value": '"A-1"'}],
                 "processDefinitionId": "order-process"}) == [a["processInstanceKey"]]
    assert keys({"processInstanceKey": {"$in": [b["processInstanceKey"]]}}) == [
        b["processInstanceKey"]]
    assert len(keys({"processDefinitionId": {"$like": "order-*"}})) == 2
    assert len(keys({})) == 3


def test_search_item_shape(c8: EngineClient) -> None:
    created = c8.start(tags=["t"]).json()
    [item] = search(c8, {"tags": ["t"]}).json()["items"]
    assert item["processInstanceKey"] == created["processInstanceKey"]
    assert item["processDefinitionKey"] == created["processDefinitionKey"]
    assert item["processDefinitionVersion"] == 3
    assert item["state"] == "ACTIVE" and item["hasIncident"] is False
    assert item["tenantId"] == "<default>" and item["tags"] == ["t"]
    assert item["startDate"].endswith("Z")


def test_search_business_id_on_8_9_only(c8: EngineClient) -> None:
    assert search(c8, {"businessId": "b-1"}).status_code == 400
    c8.app.configure_version("8.9")
    created = c8.start(businessId="b-1").json()
    items = search(c8, {"businessId": "b-1"}).json()["items"]
    assert [item["processInstanceKey"] for item in items] == [created["processInstanceKey"]]
    assert items[0]["businessId"] == "b-1"


@pytest.mark.parametrize("body", [
    {"filter": {"startDate": "x"}},  # real field the sandbox does not implement
    {"filter": {"nope": 1}},
    {"filter": {"tags": "x"}},
    {"filter": {"variables": [{"name": "a"}]}},
    {"filter": {"processDefinitionId": {"$gt": "a"}}},
    {"other": 1},
    {"page": {"limit": 0}},
])
def test_bad_search_is_400(c8: EngineClient, body: dict[str, Any]) -> None:
    response = c8.post(SEARCH, json=body)
    assert response.status_code == 400
    assert problem(response)["title"] == "INVALID_ARGUMENT"


def test_search_paging(c8: EngineClient) -> None:
    for _ in range(3):
        c8.start()
    body = c8.post(SEARCH, json={"page": {"from": 1, "limit": 1}}).json()
    assert len(body["items"]) == 1 and body["page"]["totalItems"] == 3


def test_search_honours_search_lag(c8: EngineClient) -> None:
    c8.app.faults.configure(search_lag_ms=60_000)
    c8.start(tags=["lag"])
    assert search(c8, {"tags": ["lag"]}).json()["items"] == []
    c8.app.faults.configure(search_lag_ms=0)
    assert len(search(c8, {"tags": ["lag"]}).json()["items"]) == 1


def test_deploy_new_version_becomes_latest(c8: EngineClient) -> None:
    deployed = c8.app.deploy("shipping")
    assert deployed["processDefinitionVersion"] == 1
    over_http = c8.control("deploy", {"process_id": "shipping"}).json()
    assert over_http["processDefinitionVersion"] == 2
    body = c8.post(CREATE, json={"processDefinitionId": "shipping"}).json()
    assert body["processDefinitionVersion"] == 2
    assert body["processDefinitionKey"] == over_http["processDefinitionKey"]
    assert c8.control("deploy", {"process_id": "shipping", "version": 2}).status_code == 400


def test_tenant_deployment(c8: EngineClient) -> None:
    c8.app.deploy("tenant-process", tenant_id="acme")
    assert c8.post(CREATE, json={"processDefinitionId": "tenant-process"}).status_code == 404
    response = c8.post(CREATE, json={"processDefinitionId": "tenant-process", "tenantId": "acme"})
    assert response.json()["tenantId"] == "acme"


# -- auth -------------------------------------------------------------------------------


def test_oauth2_client_credentials_and_expiry(c8: EngineClient) -> None:
    c8.app.auth.configure(type="oauth2", client_id="worker", client_secret="s3cret",
                          audience="zeebe-api", token_ttl=300)
    unauthenticated = c8.start()
    assert unauthenticated.status_code == 401
    assert problem(unauthenticated)["title"] == "UNAUTHORIZED"
    bad = c8.token(grant_type="client_credentials", client_id="worker", client_secret="no")
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    granted = c8.token(grant_type="client_credentials", client_id="worker",
                       client_secret="s3cret", audience="zeebe-api")
    assert granted.status_code == 200
    token = granted.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 300
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert c8.post(CREATE, json={"processDefinitionId": "invoice"}, headers=headers
                   ).status_code == 200
    assert c8.post(SEARCH, json={}).status_code == 401  # search is authenticated too
    c8.app.auth.expire_tokens()
    assert c8.post(CREATE, json={"processDefinitionId": "invoice"}, headers=headers
                   ).status_code == 401
    stats = c8.app.stats()
    assert stats["token_requests"] == 2 and stats["unauthorized"] == 3


def test_token_with_zero_ttl_is_already_expired(c8: EngineClient) -> None:
    c8.app.auth.configure(type="oauth2", client_id="w", client_secret="s", token_ttl=0)
    token = c8.token(grant_type="client_credentials", client_id="w", client_secret="s").json()
    response = c8.start(headers={"Authorization": f"Bearer {token['access_token']}"})
    assert response.status_code == 401


def test_token_endpoint_refuses_unknown_grant(c8: EngineClient) -> None:
    c8.app.auth.configure(type="oauth2", client_id="w", client_secret="s")
    response = c8.token(grant_type="authorization_code", client_id="w", client_secret="s")
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


@pytest.mark.parametrize(("settings", "good", "bad"), [
    ({"type": "basic", "username": "demo", "password": "pw"}, ("demo", "pw"), ("demo", "x")),
    ({"type": "bearer", "token": "t0k"}, "t0k", "other"),
])
def test_basic_and_bearer(c8: EngineClient, settings: dict[str, Any], good: Any,
                          bad: Any) -> None:
    c8.app.auth.configure(**settings)

    def start(credentials: Any) -> int:
        if isinstance(credentials, tuple):
            return c8.post(CREATE, json={"processDefinitionId": "invoice"},
                           auth=credentials).status_code
        return c8.post(CREATE, json={"processDefinitionId": "invoice"},
                       headers={"Authorization": f"Bearer {credentials}"}).status_code

    assert start(good) == 200
    assert start(bad) == 401
    assert c8.app.count() == 1


def test_the_holder_of_a_business_id_is_found_as_the_worker_looks_for_it(
        c8: EngineClient) -> None:
    """8.9 uniqueness: one active root instance per business id, process definition and
    tenant; the 409's holder is found by business id, state and no parent."""
    c8.app.configure(api_version="8.9", business_id_unique=True)
    first = c8.start(businessId="BK-1", tags=["startproc:ours"]).json()
    assert c8.start(businessId="BK-1").status_code == 409
    assert c8.post(CREATE, json={"processDefinitionId": "invoice",
                                 "businessId": "BK-1"}).status_code == 200  # another process
    holder = {"businessId": "BK-1", "state": "ACTIVE",
              "parentProcessInstanceKey": {"$exists": False},
              "processDefinitionId": "order-process"}
    items = search(c8, holder).json()["items"]
    assert [i["processInstanceKey"] for i in items] == [first["processInstanceKey"]]
    assert items[0]["tags"] == ["startproc:ours"]
    assert search(c8, {"parentProcessInstanceKey": {"$exists": True}}).json()["items"] == []
    c8.app.complete(first["processInstanceKey"])
    assert search(c8, holder).json()["items"] == []
    assert c8.start(businessId="BK-1").status_code == 200  # the id is free again
