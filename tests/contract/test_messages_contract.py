"""Starts by message and definition look-ups against the vendored engine specs.

* Camunda 8 (8.8 and 8.9): the correlation body the adapter sends must validate
  against ``MessageCorrelationRequest`` (``additionalProperties: false``), its
  answer ``MessageCorrelationResult`` is read, every documented error of
  ``POST /messages/correlation`` maps to its class; the version-tag search must
  validate against ``ProcessDefinitionSearchQuery`` and its answer is read.
* Camunda 7 (the rendered 7.15 OpenAPI): the ``POST /message`` body must
  validate against ``CorrelationMessageDto`` and the documented answer example
  is read. The same relaxation as the start contract: 7.15 types
  ``VariableValueDto.value`` as ``object`` although it is any JSON value.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import responses

from tests.support.camunda8_specs import Spec, errors_of, spec88, spec89, validate
from tests.support.vendored import spec_path
from worker.engines import build_engine
from worker.engines.base import KEY_VARIABLE, Engine
from worker.errors import AmbiguousError, Backpressure, JobError, PermanentError
from worker.models import Job
from worker.targets import Targets

C8 = "http://c8.test"
C7 = "http://c7.test/engine-rest"
KEY = "orders:message:order-received:A-17"
MESSAGE_JOBS: dict[str, dict[str, Any]] = {
    "name only": {"message": {"name": "order-received"}},
    "correlation key and ttl 0": {"message": {"name": "order-received",
                                              "correlation_key": "A-17", "ttl": 0}},
    "variables, tenant, business key": {
        "message": {"name": "order-received", "correlation_key": "A-17"},
        "variables": {"orderId": "A-17", "amount": 12.5, "items": [{"sku": "x"}]},
        "tenant_id": "acme", "business_key": "A-17"},
}


def engine(raw: dict[str, Any]) -> Engine:
    return build_engine(Targets.from_dict({"targets": {"t": raw}}, env={})["t"])


def c8(api_version: str) -> Engine:
    return engine({"engine": "camunda8", "base_url": C8, "api_version": api_version})


def job(**fields: Any) -> Job:
    return Job.parse({"target": "t", **fields})


def sent(adapter: Engine, url: str, answer: Any, **fields: Any) -> dict[str, Any]:
    """The body the adapter puts on the wire for a start (captured at the transport)."""
    with responses.RequestsMock() as mock:
        mock.post(url, json=answer)
        adapter.start(job(**fields), KEY)
        body: dict[str, Any] = json.loads(mock.calls[0].request.body or b"{}")
    return body


def spec_for(version: str) -> Spec:
    return spec88() if version == "8.8" else spec89()


# ---------------------------------------------------------------- Camunda 8: correlation


@pytest.mark.parametrize("version", ["8.8", "8.9"])
@pytest.mark.parametrize("case", list(MESSAGE_JOBS))
def test_c8_correlation_bodies_validate(version: str, case: str) -> None:
    spec = spec_for(version)
    schema = spec.request_schema("/messages/correlation")
    assert schema == {"$ref": "#/components/schemas/MessageCorrelationRequest"}
    answer = {"messageKey": "1", "processInstanceKey": "2", "tenantId": "<default>"}
    body = sent(c8(version), f"{C8}/v2/messages/correlation", answer, **MESSAGE_JOBS[case])
    validate(spec.validator(schema), body)
    assert body["variables"][KEY_VARIABLE] == KEY  # for the reconcile lookup


def test_c8_the_correlation_validator_can_fail() -> None:
    validator = spec89().validator({"$ref": "#/components/schemas/MessageCorrelationRequest"})
    assert errors_of(validator, {"name": "m", "timeToLive": 0})  # that is publication's
    assert errors_of(validator, {"correlationKey": "k"})  # name is required
    assert errors_of(validator, {"name": "m", "businessId": "b"})


@pytest.mark.parametrize("version", ["8.8", "8.9"])
def test_c8_the_documented_answer_is_read(version: str) -> None:
    spec = spec_for(version)
    schema = spec.operation("/messages/correlation")["responses"]["200"]["content"][
        "application/json"]["schema"]
    answer = {"messageKey": "2251799813683467", "processInstanceKey": "2251799813690746",
              "tenantId": "<default>"}
    validate(spec.validator(schema), answer)
    with responses.RequestsMock() as mock:
        mock.post(f"{C8}/v2/messages/correlation", json=answer)
        started = c8(version).start(job(**MESSAGE_JOBS["name only"]), KEY)
    assert started.instance_id == "2251799813690746"


EXPECTED = {400: PermanentError, 403: PermanentError, 404: PermanentError,
            500: AmbiguousError, 503: Backpressure}


@pytest.mark.parametrize("version", ["8.8", "8.9"])
def test_c8_every_documented_correlation_error_maps_to_its_class(version: str) -> None:
    spec = spec_for(version)
    responses_of = spec.operation("/messages/correlation")["responses"]
    documented = {int(s): r for s, r in responses_of.items() if int(s) >= 400}
    assert set(documented) == set(EXPECTED), "the spec's error responses changed"
    for status, described in documented.items():
        schema = spec.resolve(described)["content"]["application/problem+json"]["schema"]
        title = "RESOURCE_EXHAUSTED" if status == 503 else "NOT_FOUND"
        problem = {"type": "about:blank", "title": title, "status": status,
                   "detail": f"answered {status}", "instance": "/v2/messages/correlation"}
        validate(spec.validator(schema), problem)
        with responses.RequestsMock() as mock:
            mock.post(f"{C8}/v2/messages/correlation", json=problem, status=status)
            with pytest.raises(JobError) as caught:
                c8(version).start(job(**MESSAGE_JOBS["name only"]), KEY)
        assert type(caught.value) is EXPECTED[status], status
        assert caught.value.http_status == status and caught.value.engine_error == problem


# ---------------------------------------------------------------- Camunda 8: lookups


def test_c8_89_message_lookup_by_variable_validates() -> None:
    with responses.RequestsMock() as mock:
        mock.post(f"{C8}/v2/process-instances/search", json={"items": []})
        assert c8("8.9").lookup(job(**MESSAGE_JOBS["name only"]), KEY) is None
        body = json.loads(mock.calls[0].request.body or b"{}")
    assert body == {"filter": {"variables": [{"name": KEY_VARIABLE, "value": json.dumps(KEY)}]}}
    validate(spec89().validator(spec89().request_schema("/process-instances/search")), body)


@pytest.mark.parametrize("version", ["8.8", "8.9"])
def test_c8_version_tag_search_validates_and_its_answer_is_read(version: str) -> None:
    spec = spec_for(version)
    item = {"name": "Order process", "resourceName": "order.bpmn", "version": 3,
            "versionTag": "2.0", "processDefinitionId": "order-process", "tenantId": "acme",
            "processDefinitionKey": "2251799813686749", "hasStartForm": False}
    page: dict[str, Any] = {"totalItems": 1}
    if version == "8.9":
        item["state"] = "ACTIVE"
        page.update(hasMoreTotalItems=False, startCursor="WzNd", endCursor="WzNd")
    answer = {"items": [item], "page": page}
    result_schema = spec.operation("/process-definitions/search")["responses"]["200"][
        "content"]["application/json"]["schema"]
    validate(spec.validator(result_schema), answer)
    with responses.RequestsMock() as mock:
        mock.post(f"{C8}/v2/process-definitions/search", json=answer)
        mock.post(f"{C8}/v2/process-instances", json={"processInstanceKey": "9"})
        c8(version).start(job(process="order-process", tenant_id="acme",
                              options={"version_tag": "2.0"}), KEY)
        search = json.loads(mock.calls[0].request.body or b"{}")
        create = json.loads(mock.calls[1].request.body or b"{}")
    validate(spec.validator(spec.request_schema("/process-definitions/search")), search)
    assert search["filter"]["versionTag"] == "2.0"
    assert create["processDefinitionKey"] == "2251799813686749"
    assert "processDefinitionId" not in create
    validate(spec.validator(spec.request_schema("/process-instances")), create)


def test_c8_the_definition_search_validator_can_fail() -> None:
    validator = spec89().validator(spec89().request_schema("/process-definitions/search"))
    assert errors_of(validator, {"filter": {"versionTag": 2}})
    assert errors_of(validator, {"filter": {"processDefinitionId": 5}})
    assert errors_of(validator, {"page": {"limit": 1}})  # the query's own properties only
    assert errors_of(validator, {"sort": [{"field": "startDate"}]})


# ---------------------------------------------------------------- Camunda 7: POST /message


@pytest.fixture(scope="module")
def c7_spec() -> Spec:
    document = json.loads(spec_path("camunda7-7.15.0-engine-rest-openapi.json").read_text())
    document = copy.deepcopy(document)
    value = document["components"]["schemas"]["VariableValueDto"]["properties"]["value"]
    assert value.get("type") == "object", "the 7.15 defect this test relaxes is gone: drop it"
    del value["type"]
    return Spec(document, "urn:startproc:camunda7-7.15-messages")


C7_ANSWER = [{"resultType": "ProcessDefinition", "execution": None,
              "processInstance": {"links": [], "id": "aProcInstId", "definitionId": "aProcDefId",
                                  "businessKey": "aKey", "caseInstanceId": None,
                                  "ended": False, "suspended": False, "tenantId": None}}]


@pytest.mark.parametrize("case", [c for c in MESSAGE_JOBS if c != "correlation key and ttl 0"])
def test_c7_message_bodies_validate(c7_spec: Spec, case: str) -> None:
    schema = c7_spec.request_schema("/message")
    assert schema == {"$ref": "#/components/schemas/CorrelationMessageDto"}
    fields = copy.deepcopy(MESSAGE_JOBS[case])
    fields["message"].pop("correlation_key", None)
    adapter = engine({"engine": "camunda7", "base_url": C7})
    body = sent(adapter, f"{C7}/message", C7_ANSWER, **fields)
    validate(c7_spec.validator(schema), body)
    assert body["resultEnabled"] is True and body["messageName"] == "order-received"
    assert set(body) <= set(c7_spec.schema("CorrelationMessageDto")["properties"])


def test_c7_the_documented_answer_example_is_read(c7_spec: Spec) -> None:
    ok = c7_spec.operation("/message")["responses"]["200"]["content"]["application/json"]
    example = ok["examples"]["example-1"]["value"]
    # 7.15's own example sends "execution": null, which its schema (a non-nullable $ref)
    # refuses: the example is what the engine answers, so the rest of it must validate.
    assert example[0]["execution"] is None
    problems = errors_of(c7_spec.validator(ok["schema"]), example)
    assert problems and all("'execution'" in p for p in problems), problems
    with responses.RequestsMock() as mock:
        mock.post(f"{C7}/message", json=example)
        adapter = engine({"engine": "camunda7", "base_url": C7})
        started = adapter.start(job(**MESSAGE_JOBS["name only"]), KEY)
    assert started.instance_id == "aProcInstId"


def test_c7_an_answer_for_a_waiting_execution_is_permanent(c7_spec: Spec) -> None:
    ok = c7_spec.operation("/message")["responses"]["200"]["content"]["application/json"]
    example = ok["examples"]["example-2"]["value"]  # resultType Execution
    with responses.RequestsMock() as mock:
        mock.post(f"{C7}/message", json=example)
        adapter = engine({"engine": "camunda7", "base_url": C7})
        with pytest.raises(PermanentError, match="no instance was started") as caught:
            adapter.start(job(**MESSAGE_JOBS["name only"]), KEY)
    assert "aProcInstId" in caught.value.message


def test_c7_a_documented_400_is_permanent(c7_spec: Spec) -> None:
    assert "400" in c7_spec.operation("/message")["responses"]
    error = {"type": "RestException", "message": "Cannot correlate message 'x': No process "
             "definition or execution matches the parameters", "code": None}
    with responses.RequestsMock() as mock:
        mock.post(f"{C7}/message", json=error, status=400)
        adapter = engine({"engine": "camunda7", "base_url": C7})
        with pytest.raises(PermanentError) as caught:
            adapter.start(job(**MESSAGE_JOBS["name only"]), KEY)
    assert caught.value.http_status == 400 and caught.value.engine_error == error
