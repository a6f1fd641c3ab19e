"""Message start events (Camunda 8 and 7) and the C8 definition search, over real HTTP.

Deployments outlive a sandbox reset, so a test that deploys uses names of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from worker.local.sandbox import SandboxServer

from .helpers import EngineClient, client_for

CORRELATE = "/v2/messages/correlation"
DEFINITIONS = "/v2/process-definitions/search"


# ---------------------------------------------------------------- Camunda 8: correlate


def test_c8_a_message_starts_the_newest_definition_with_that_start_event(
    c8: EngineClient,
) -> None:
    c8.app.deploy("newest-intake", 1, message_start="newest-received")
    c8.app.deploy("newest-intake", 2, message_start="newest-received")
    response = c8.post(CORRELATE, json={"name": "newest-received", "correlationKey": "A-17",
                                        "variables": {"orderId": "A-17"}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"messageKey", "processInstanceKey", "tenantId"}
    assert body["tenantId"] == "<default>"
    assert isinstance(body["processInstanceKey"], str)
    [stored] = c8.app.instances
    assert stored["id"] == body["processInstanceKey"]
    assert (stored["process"], stored["version"]) == ("newest-intake", 2)
    assert stored["variables"] == {"orderId": "A-17"}
    assert (stored["message"], stored["correlationKey"]) == ("newest-received", "A-17")
    assert c8.app.stats()["start_requests"] == 1  # faults, auth and counters as a start


def test_c8_an_unknown_message_is_404_not_found(c8: EngineClient) -> None:
    response = c8.post(CORRELATE, json={"name": "nobody-listens", "correlationKey": "k"})
    assert response.status_code == 404
    body = response.json()
    assert body["title"] == "NOT_FOUND"
    assert "nobody-listens" in body["detail"] and "'k'" in body["detail"]
    assert c8.app.count() == 0


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"correlationKey": "k"}, "No name provided"),
        ({"name": "order-received", "timeToLive": 0}, "[timeToLive] cannot be parsed"),
        ({"name": "order-received", "variables": []}, "variables must be a dict"),
        ({"name": "order-received", "tenantId": "a b"}, "tenantId must match"),
    ],
)
def test_c8_correlation_requests_outside_the_schema_are_400(
    c8: EngineClient, body: dict[str, Any], detail: str
) -> None:
    response = c8.post(CORRELATE, json=body)
    assert response.status_code == 400
    assert detail in response.json()["detail"]
    assert c8.app.count() == 0


def test_c8_a_message_is_per_tenant(c8: EngineClient) -> None:
    c8.app.deploy("tenant-intake", tenant_id="acme", message_start="tenant-received")
    body = c8.post(CORRELATE, json={"name": "tenant-received", "tenantId": "acme"}).json()
    assert body["tenantId"] == "acme"
    assert c8.app.instances[0]["tenant_id"] == "acme"
    assert c8.post(CORRELATE, json={"name": "tenant-received"}).status_code == 404


def test_c8_message_instances_are_found_by_variable(c8: EngineClient) -> None:
    key = c8.post(CORRELATE, json={"name": "order-received",
                                   "variables": {"_startproc_key": "k-1"}}).json()
    search = c8.post("/v2/process-instances/search", json={
        "filter": {"variables": [{"name": "_startproc_key", "value": '"k-1"'}]}}).json()
    assert [i["processInstanceKey"] for i in search["items"]] == [key["processInstanceKey"]]


def test_c8_86_answers_numeric_keys(c8: EngineClient) -> None:
    c8.app.configure(api_version="8.6")
    body = c8.post(CORRELATE, json={"name": "order-received"}).json()
    assert isinstance(body["processInstanceKey"], int)
    assert isinstance(body["messageKey"], int)


# ---------------------------------------------------------------- Camunda 8: definitions


def test_c8_definitions_by_version_tag_newest_first(c8: EngineClient) -> None:
    response = c8.post(DEFINITIONS, json={
        "filter": {"processDefinitionId": {"$eq": "order-process"}, "versionTag": "2.0"},
        "sort": [{"field": "version", "order": "DESC"}]})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(i["version"], i["versionTag"]) for i in items] == [(3, "2.0"), (2, "2.0")]
    assert set(items[0]) == {"name", "resourceName", "version", "versionTag",
                             "processDefinitionId", "tenantId", "processDefinitionKey",
                             "hasStartForm", "state"}
    assert isinstance(items[0]["processDefinitionKey"], str)


def test_c8_definition_search_filters_and_pages(c8: EngineClient) -> None:
    def found(body: dict[str, Any]) -> list[tuple[str, int]]:
        response = c8.post(DEFINITIONS, json=body)
        assert response.status_code == 200, response.text
        return [(i["processDefinitionId"], i["version"]) for i in response.json()["items"]]

    assert found({"filter": {"versionTag": "1.0"}}) == [("order-process", 1)]
    assert found({"filter": {"processDefinitionId": "invoice"}}) == [("invoice", 1)]
    assert found({"filter": {"processDefinitionId": "order-process", "isLatestVersion": True}}) \
        == [("order-process", 3)]
    assert found({"filter": {"versionTag": "9.9"}}) == []
    assert found({"filter": {"processDefinitionId": "order-process"},
                  "sort": [{"field": "version"}], "page": {"from": 1, "limit": 1}}) \
        == [("order-process", 2)]


@pytest.mark.parametrize(
    "body",
    [{"filter": {"bpmnProcessId": "x"}}, {"filter": {"version": "3"}}, {"size": 1},
     {"sort": [{"field": "startDate"}]}, {"filter": {"hasStartForm": True}}],
)
def test_c8_definition_searches_it_cannot_answer_are_400(
    c8: EngineClient, body: dict[str, Any]
) -> None:
    assert c8.post(DEFINITIONS, json=body).status_code == 400


# ---------------------------------------------------------------- Camunda 7: POST /message


@pytest.fixture
def c7(client: Callable[[str], EngineClient]) -> EngineClient:
    return client("camunda7")


def test_c7_a_message_with_result_names_the_started_instance(c7: EngineClient) -> None:
    response = c7.post("/message", json={
        "messageName": "invoice-received", "businessKey": "INV-1",
        "processVariables": {"amount": {"value": 30, "type": "Integer"}},
        "resultEnabled": True})
    assert response.status_code == 200, response.text
    [result] = response.json()
    assert result["resultType"] == "ProcessDefinition" and result["execution"] is None
    instance = result["processInstance"]
    assert instance["businessKey"] == "INV-1"
    assert instance["definitionId"].startswith("invoice-intake:1:")
    [stored] = c7.app.instances
    assert stored["id"] == instance["id"] and stored["variables"] == {"amount": 30}
    assert stored["message"] == "invoice-received"


def test_c7_without_result_enabled_the_answer_is_204(c7: EngineClient) -> None:
    response = c7.post("/message", json={"messageName": "invoice-received"})
    assert response.status_code == 204 and not response.content
    assert c7.app.count() == 1


def test_c7_with_variables_in_result(c7: EngineClient) -> None:
    [result] = c7.post("/message", json={
        "messageName": "invoice-received", "resultEnabled": True,
        "variablesInResultEnabled": True,
        "processVariables": {"a": {"value": "x", "type": "String"}}}).json()
    assert result["variables"]["a"]["value"] == "x"


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"messageName": "nobody-listens", "resultEnabled": True}, 400,
         "Cannot correlate message 'nobody-listens': No process definition or execution"),
        ({"messageName": "invoice-received", "processInstanceId": "x"}, 400,
         "Cannot correlate message"),
        ({"businessKey": "b"}, 400, "No message name supplied"),
        ({"messageName": "invoice-received", "tenantId": "a", "withoutTenantId": True}, 400,
         "cannot be used together"),
        ({"messageName": "invoice-received", "name": "x"}, 400, 'Unrecognized field "name"'),
        ({"messageName": "invoice-received", "resultEnabled": "yes"}, 400, "resultEnabled"),
        ({"messageName": "invoice-received",
          "processVariables": {"n": {"value": "abc", "type": "Integer"}}}, 400,
         "Cannot instantiate process definition"),
    ],
)
def test_c7_message_errors(c7: EngineClient, body: dict[str, Any], status: int, text: str) -> None:
    response = c7.post("/message", json=body)
    assert response.status_code == status
    assert text in response.json()["message"]
    assert c7.app.count() == 0


def test_c7_one_message_two_definitions_needs_all(c7: EngineClient) -> None:
    c7.app.deploy("first-of-two", message_start="twice-received")
    c7.app.deploy("second-of-two", message_start="twice-received")
    assert c7.post("/message", json={"messageName": "twice-received"}).status_code == 400
    results = c7.post("/message", json={"messageName": "twice-received", "all": True,
                                        "resultEnabled": True}).json()
    assert len(results) == 2 and c7.app.count() == 2


def test_c7_tenants_of_a_message(c7: EngineClient) -> None:
    c7.app.deploy("tenant-intake", message_start="tenant-received")
    c7.app.deploy("tenant-intake", tenant_id="acme", message_start="tenant-received")
    assert c7.post("/message", json={"messageName": "tenant-received"}).status_code == 400
    [result] = c7.post("/message", json={"messageName": "tenant-received", "tenantId": "acme",
                                         "resultEnabled": True}).json()
    assert result["processInstance"]["tenantId"] == "acme"
    [result] = c7.post("/message", json={"messageName": "tenant-received",
                                         "withoutTenantId": True, "resultEnabled": True}).json()
    assert result["processInstance"]["tenantId"] is None


# ---------------------------------------------------------------- Camunda 7 forks


@pytest.fixture(params=[("operaton", "/engine-rest", "1.0.0"),
                        ("cibseven", "/engine-rest", "2.0.0"),
                        ("camunda7", "/rest", "7.24.0")],
                ids=["operaton", "cibseven", "camunda7 under /rest"])
def fork(request: pytest.FixtureRequest) -> Iterator[tuple[EngineClient, str, str]]:
    product, base_path, version = request.param
    with SandboxServer("camunda7", camunda7_product=product,
                       camunda7_base_path=base_path) as server:
        yield client_for(server, "camunda7"), product, version


def test_a_fork_serves_the_same_api_under_its_base_path(
    fork: tuple[EngineClient, str, str],
) -> None:
    c7, product, version = fork
    assert c7.base.endswith(c7.app.base_path) and c7.app.product == product
    assert c7.get("/version").json() == {"version": version}
    started = c7.start()
    assert started.status_code == 200, started.text
    assert started.json()["links"][0]["href"] == f"{c7.base}/process-instance/" \
        f"{started.json()['id']}"
    unknown = c7.post("/process-definition/key/invoice/start", json={"nope": 1})
    package = {"operaton": "org.operaton", "cibseven": "org.cibseven"}.get(product, "org.camunda")
    assert f"(class {package}.bpm.engine.rest.dto.runtime" in unknown.json()["message"]
    assert c7.post("/message", json={"messageName": "invoice-received"}).status_code == 204


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"camunda7_product": "activiti"}, "product must be one of"),
    ({"camunda7_base_path": "engine-rest"}, "base_path must start with /"),
])
def test_unknown_forks_and_bad_base_paths_are_refused(kwargs: dict[str, str], text: str) -> None:
    with pytest.raises(ValueError, match=text):
        SandboxServer("camunda7", **kwargs)
