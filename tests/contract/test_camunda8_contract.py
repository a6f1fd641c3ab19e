"""The Camunda 8 adapter against the Orchestration Cluster REST API descriptions.

Two documents in ``tests/fixtures/specs``: the 8.8 OpenAPI YAML and the 8.9 bundle.
Every body the adapter sends to ``POST /process-instances`` for a matrix of
jobs must validate against ``ProcessInstanceCreationInstruction`` (a oneOf of
by-id / by-key, both ``additionalProperties: false``); the lookup body must
validate against the ``/process-instances/search`` request; every documented
error response of the create operation must map to its error class.

Two deliberate adaptations, each asserted so it is dropped when the spec changes:

* 8.9 writes the ``ProcessDefinitionId`` pattern with ``\\p{L}``/``\\p{N}``, which
  Python's ``re`` (used by jsonschema) cannot compile; it is translated to the
  nearest ``re`` form (``\\w`` is Unicode letters, numbers and ``_``).
* For the variable lookup only: 8.8 gives ``StringFilterProperty``
  ``type: object`` next to a ``oneOf`` whose first branch is a plain string
  (the documented exact match), so the spec rejects its own exact-match form;
  that one ``type`` is dropped before validating.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import responses

from tests.support.camunda8 import BASE, engine, job
from tests.support.camunda8_specs import (
    Spec,
    errors_of,
    load,
    validate,
)
from tests.support.camunda8_specs import spec88 as load_spec88
from tests.support.camunda8_specs import spec89 as load_spec89
from worker.engines.base import KEY_VARIABLE
from worker.engines.camunda8 import key_tag
from worker.errors import (
    AmbiguousError,
    Backpressure,
    ConflictError,
    InvalidJob,
    JobError,
    PermanentError,
    TransientError,
)

CREATE = f"{BASE}/v2/process-instances"
SEARCH = f"{BASE}/v2/process-instances/search"
KEY = "orders:A-17"
CREATE_SCHEMA = "#/components/schemas/ProcessInstanceCreationInstruction"


@pytest.fixture(scope="module")
def spec88() -> Spec:
    return load_spec88()


@pytest.fixture(scope="module")
def spec89() -> Spec:
    return load_spec89()


def patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        nested = [v for k, v in node.items() if not (k == "pattern" and isinstance(v, str))]
        return found + [p for v in nested for p in patterns(v)]
    if isinstance(node, list):
        return [p for v in node for p in patterns(v)]
    return []


def sent_body(api_version: str, key: str = KEY, **fields: Any) -> dict[str, Any]:
    """The body the adapter puts on the wire (captured at the transport)."""
    with responses.RequestsMock() as mock:
        mock.post(CREATE, json={"processInstanceKey": "1"})
        engine(api_version).start(job(**fields), key)
        body: dict[str, Any] = json.loads(mock.calls[0].request.body or b"{}")
    return body


def sent_search(api_version: str, key: str = KEY) -> dict[str, Any]:
    with responses.RequestsMock() as mock:
        mock.post(SEARCH, json={"items": []})
        assert engine(api_version).lookup(job(), key) is None
        body: dict[str, Any] = json.loads(mock.calls[0].request.body or b"{}")
    return body


ALL_OPTIONS = {
    "tags": ["vip", "region:eu-west.1", "batch_7", "T-1"],
    "start_instructions": ["Task_Review", {"elementId": "Gateway_1"}],
    "await_completion": True,
    "fetch_variables": ["total", "approved"],
    "request_timeout": 30000,
}

JOBS: dict[str, dict[str, Any]] = {
    "by id": {},
    "by id and version": {"version": 3},
    "by id, max int32 version": {"version": 2**31 - 1},
    "by key (string)": {"options": {"process_definition_key": "2251799813686749"}},
    "by key (number)": {"options": {"process_definition_key": 2251799813686749}},
    "by key, negative": {"options": {"process_definition_key": "-1"}},
    "variables of every JSON type": {
        "variables": {
            "s": "x",
            "i": 1,
            "f": 1.5,
            "b": False,
            "n": None,
            "list": [1, "a", {"x": []}],
            "obj": {"nested": {"deep": [True]}},
        }
    },
    "business key": {"business_key": "A-17"},
    "tenant": {"tenant_id": "acme"},
    "default tenant": {"tenant_id": "<default>"},
    "tenant with every allowed character": {"tenant_id": "a_b@c.d+e-F9"},
    "one tag": {"options": {"tags": ["vip"]}},
    "nine tags": {"options": {"tags": [f"tag-{i}" for i in range(9)]}},
    "longest tag": {"options": {"tags": ["T" + "x" * 99]}},
    "start instructions": {"options": {"start_instructions": ["A", {"element_id": "B"}]}},
    "await completion": {"options": {"await_completion": True}},
    "await completion and fetch": {
        "options": {"await_completion": True, "fetch_variables": ["total"]}
    },
    "request timeout": {"options": {"request_timeout": 0}},
    "all options by id": {"version": 2, "tenant_id": "acme", "options": ALL_OPTIONS},
    "all options by key": {
        "tenant_id": "acme",
        "business_key": "A-17",
        "variables": {"orderId": "A-17"},
        "options": {**ALL_OPTIONS, "process_definition_key": "2251799813686749"},
    },
}

KEYS = [KEY, "k" * 512, "ключ:Ä ß?&=#\"'", "job:3f2a-…"]


# ---------------------------------------------------------------- the schema we validate with


def test_create_request_is_the_documented_one_of(spec88: Spec, spec89: Spec) -> None:
    for spec in (spec88, spec89):
        schema = spec.request_schema("/process-instances")
        assert schema == {"$ref": CREATE_SCHEMA}
        branches = spec.resolve(schema)["oneOf"]
        names = {spec.resolve(b)["title"].lower() for b in branches}
        assert names == {"process creation by id", "process creation by key"}
        for branch in branches:
            assert spec.resolve(branch)["additionalProperties"] is False


def test_a_missing_spec_fails_with_a_clear_message() -> None:
    with pytest.raises(
        pytest.fail.Exception, match=r"API description .*no-such-spec\.yaml is missing"
    ):
        load("no-such-spec.yaml")


def test_every_pattern_compiles_in_python(spec88: Spec, spec89: Spec) -> None:
    for spec in (spec88, spec89):
        for pattern in patterns(spec.document):
            re.compile(pattern)


def test_translated_process_id_pattern(spec89: Spec) -> None:
    validator = spec89.validator({"$ref": "#/components/schemas/ProcessDefinitionId"})
    for good in ("order-process", "_x.1", "Bestellung-ä", "注文"):
        validate(validator, good)
    for bad in ("1abc", "-x", "a b", "a/b", ""):
        assert errors_of(validator, bad), bad


# ---------------------------------------------------------------- request bodies


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("case", list(JOBS))
def test_88_bodies_validate(spec88: Spec, case: str, key: str) -> None:
    validator = spec88.validator(spec88.request_schema("/process-instances"))
    validate(validator, sent_body("8.8", key=key, **JOBS[case]))


@pytest.mark.parametrize("case", list(JOBS))
def test_89_bodies_validate(spec89: Spec, case: str) -> None:
    validator = spec89.validator(spec89.request_schema("/process-instances"))
    validate(validator, sent_body("8.9", **JOBS[case]))


@pytest.mark.parametrize(
    "fields",
    [
        {"business_key": "A-17"},
        {"options": {"business_id": "order-A-17"}},
        {"options": {"business_id": "b" * 256, "process_definition_key": "1"}},
        {"business_key": "A-17", "options": {"business_id": "other", "tags": ["vip"]}},
    ],
)
def test_89_business_id_is_accepted(spec89: Spec, fields: dict[str, Any]) -> None:
    body = sent_body("8.9", **fields)
    assert "businessId" in body
    validate(spec89.validator(spec89.request_schema("/process-instances")), body)


def test_by_id_and_by_key_bodies_match_exactly_one_branch(spec88: Spec) -> None:
    schemas = "#/components/schemas/ProcessInstanceCreationInstruction"
    by_id = spec88.validator({"$ref": f"{schemas}ById"})
    by_key = spec88.validator({"$ref": f"{schemas}ByKey"})
    id_body = sent_body("8.8", **JOBS["all options by id"])
    key_body = sent_body("8.8", **JOBS["all options by key"])
    assert not errors_of(by_id, id_body) and errors_of(by_key, id_body)
    assert not errors_of(by_key, key_body) and errors_of(by_id, key_body)


@pytest.mark.parametrize(
    "fields",
    [
        {"process": "order process"},
        {"process": 42},
        {"process": "orders/v2"},
        {"tenant_id": "acme corp"},
        {"options": {"process_definition_key": "1" * 30}},
    ],
    ids=["space in process", "numeric process", "slash in process", "space in tenant", "long key"],
)
def test_valid_jobs_never_yield_a_body_the_spec_rejects(
    spec88: Spec, fields: dict[str, Any]
) -> None:
    validator = spec88.validator(spec88.request_schema("/process-instances"))
    try:
        body = engine("8.8").build_request(job(**fields), KEY).json
    except InvalidJob:
        return
    assert not errors_of(validator, body), f"adapter emitted a body the spec rejects: {body}"


# ---------------------------------------------------------------- the validator can fail


@pytest.mark.parametrize(
    ("case", "mutate"),
    [
        ("businessId on 8.8", lambda b: b.update(businessId="A-17")),
        ("unknown field", lambda b: b.update(businessKey="A-17")),
        ("both id and key", lambda b: b.update(processDefinitionKey="1")),
        ("numeric key", lambda b: b.update(processDefinitionKey=1)),
        ("operationReference 0", lambda b: b.update(operationReference=0)),
        ("operationReference > int64", lambda b: b.update(operationReference=2**63)),
        ("eleven tags", lambda b: b.update(tags=[f"t{i}" for i in range(11)])),
        ("duplicate tags", lambda b: b.update(tags=["a", "a"])),
        ("bad tag", lambda b: b.update(tags=["1-starts-with-a-digit"])),
        ("bad process id", lambda b: b.update(processDefinitionId="has space")),
        ("bad tenant", lambda b: b.update(tenantId="a b")),
        ("start instruction without elementId", lambda b: b.update(startInstructions=[{}])),
        ("variables not an object", lambda b: b.update(variables=[1])),
        ("8.6-alpha name", lambda b: b.update(bpmnProcessId="order-process")),
    ],
)
def test_the_88_validator_rejects_bodies_outside_the_spec(
    spec88: Spec, case: str, mutate: Any
) -> None:
    validator = spec88.validator(spec88.request_schema("/process-instances"))
    body = copy.deepcopy(sent_body("8.8"))
    validate(validator, body)
    mutate(body)
    assert errors_of(validator, body), f"{case}: the validator accepted {body}"


def test_89_body_with_business_id_is_rejected_by_88(spec88: Spec, spec89: Spec) -> None:
    body = sent_body("8.9", business_key="A-17")
    validate(spec89.validator(spec89.request_schema("/process-instances")), body)
    assert errors_of(spec88.validator(spec88.request_schema("/process-instances")), body)


@pytest.mark.parametrize("key", KEYS)
def test_89_bodies_without_a_business_key_carry_the_key_as_business_id(
    spec89: Spec, key: str
) -> None:
    body = sent_body("8.9", key=key)
    assert body["businessId"] == (key if len(key) <= 256 else key_tag(key))
    validate(spec89.validator(spec89.request_schema("/process-instances")), body)


def test_business_id_is_a_creation_field_and_a_search_filter_of_89_only(
    spec88: Spec, spec89: Spec
) -> None:
    """What the adapter relies on, read from the specs themselves."""
    for branch in ("ById", "ByKey"):
        properties = spec89.schema(f"ProcessInstanceCreationInstruction{branch}")["properties"]
        assert properties["businessId"] == {"$ref": "#/components/schemas/BusinessId"}
        assert "businessId" not in spec88.schema(f"ProcessInstanceCreationInstruction{branch}")[
            "properties"
        ]
    business_id = spec89.schema("BusinessId")
    assert (business_id["type"], business_id["minLength"], business_id["maxLength"]) == (
        "string",
        1,
        256,
    )
    filters = spec89.schema("BaseProcessInstanceFilterFields")["properties"]
    assert {"businessId", "state", "parentProcessInstanceKey", "tags", "tenantId"} <= set(filters)
    conflict = spec89.operation("/process-instances")["responses"]["409"]["description"]
    assert "business ID" in conflict and "active root process instance" in conflict


def test_89_the_409_lookup_sends_documented_searches(spec89: Spec) -> None:
    search = spec89.validator(spec89.request_schema("/process-instances/search"))
    holder = {"processInstanceKey": "2251799813685249", "state": "ACTIVE", "tags": ["other"],
              "businessId": "A-17", "tenantId": "acme"}
    found = {"items": [holder], "page": {"totalItems": 1}}
    conflict = {"type": "about:blank", "title": "ALREADY_EXISTS", "status": 409,
                "detail": "business id in use", "instance": "/v2/process-instances"}
    for fields in ({"business_key": "A-17"}, {"options": {"process_definition_key": "1"}}):
        with responses.RequestsMock() as mock:
            mock.post(CREATE, json=conflict, status=409)
            mock.post(SEARCH, json=found)
            mock.post(SEARCH, json={"items": [], "page": {"totalItems": 0}})
            with pytest.raises(ConflictError) as caught:
                engine("8.9").start(job(tenant_id="acme", **fields), KEY)
            sent = [json.loads(call.request.body or b"{}") for call in mock.calls[1:]]
        assert caught.value.existing_instance_id == "2251799813685249"
        holder_search, tag_search = sent
        assert holder_search["filter"]["businessId"] == fields.get("business_key", KEY)
        assert tag_search == {"filter": {"tags": [key_tag(KEY)]}}
        for body in sent:
            validate(search, body)


@pytest.mark.parametrize("version", ["8.6", "8.6-alpha"])
def test_older_versions_are_not_88_bodies(spec88: Spec, version: str) -> None:
    """8.6 keys are numbers and 8.6-alpha names differ: the 8.8 schema must notice."""
    validator = spec88.validator(spec88.request_schema("/process-instances"))
    if version == "8.6":
        body = sent_body(version, options={"process_definition_key": "2251799813686749"})
    else:
        body = sent_body(version)
    assert errors_of(validator, body)


# ---------------------------------------------------------------- lookup


@pytest.mark.parametrize("version", ["8.8", "8.9"])
@pytest.mark.parametrize("key", KEYS)
def test_tag_lookup_body_validates(spec88: Spec, spec89: Spec, version: str, key: str) -> None:
    spec = spec88 if version == "8.8" else spec89
    body = sent_search(version, key)
    assert body == {"filter": {"tags": [key_tag(key)]}}
    validate(spec.validator(spec.request_schema("/process-instances/search")), body)


def test_variable_lookup_body_has_the_88_filter_shape(spec88: Spec) -> None:
    document = copy.deepcopy(spec88.document)
    string_filter = document["components"]["schemas"]["StringFilterProperty"]
    assert string_filter.get("type") == "object", "the 8.8 quirk this test relaxes is gone: drop it"
    assert string_filter["oneOf"][0]["type"] == "string"
    del string_filter["type"]
    relaxed = Spec(document, "urn:startproc:camunda8-8.8-relaxed")
    validator = relaxed.validator(relaxed.request_schema("/process-instances/search"))
    for key in KEYS:
        body = sent_search("8.6", key)
        assert body["filter"]["variables"] == [{"name": KEY_VARIABLE, "value": json.dumps(key)}]
        validate(validator, body)
    assert errors_of(validator, {"filter": {"variables": [{"name": KEY_VARIABLE}]}})


def test_search_result_from_the_schema_is_read(spec88: Spec) -> None:
    item = {
        "processDefinitionId": "order-process",
        "processDefinitionName": "Order process",
        "processDefinitionVersion": 3,
        "startDate": "2026-11-25T10:00:00.000Z",
        "state": "ACTIVE",
        "hasIncident": False,
        "tenantId": "<default>",
        "processInstanceKey": "2251799813685249",
        "processDefinitionKey": "2251799813684001",
        "tags": [key_tag(KEY)],
    }
    result = {"items": [item], "page": {"totalItems": 1}}
    validate(
        spec88.validator(
            spec88.operation("/process-instances/search")["responses"]["200"]["content"][
                "application/json"
            ]["schema"]
        ),
        result,
    )
    with responses.RequestsMock() as mock:
        mock.post(SEARCH, json=result)
        assert engine("8.8").lookup(job(), KEY) == "2251799813685249"


# ---------------------------------------------------------------- responses


def test_success_result_from_the_schema_is_read(spec88: Spec) -> None:
    result = {
        "processDefinitionId": "order-process",
        "processDefinitionKey": "2251799813684001",
        "processDefinitionVersion": 3,
        "processInstanceKey": "2251799813685249",
        "tenantId": "<default>",
        "variables": {},
        "tags": [key_tag(KEY)],
    }
    schema = spec88.operation("/process-instances")["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    validate(spec88.validator(schema), result)
    with responses.RequestsMock() as mock:
        mock.post(CREATE, json=result)
        started = engine("8.8").start(job(), KEY)
    assert started.instance_id == "2251799813685249"


TITLES = {
    400: ("INVALID_ARGUMENT", "Request property [processDefinitionVersion] cannot be parsed"),
    409: ("ALREADY_EXISTS", "an active instance with business id 'A-17' exists"),
    500: ("INTERNAL", "Unexpected error occurred during the request processing"),
    503: (
        "RESOURCE_EXHAUSTED",
        "Expected to execute the command on one of the partitions, "
        "but all failed; there are no more partitions available to retry",
    ),
    504: ("DEADLINE_EXCEEDED", "Time out between gateway and broker"),
}
EXPECTED = {
    "8.8": {400: PermanentError, 500: AmbiguousError, 503: Backpressure, 504: AmbiguousError},
    "8.9": {
        400: PermanentError,
        409: ConflictError,  # after looking up the holder: here not ours
        500: AmbiguousError,
        503: Backpressure,
        504: AmbiguousError,
    },
}


def documented_errors(spec: Spec) -> dict[int, dict[str, Any]]:
    """Status -> the ProblemDetail schema of each error response of createProcessInstance."""
    out = {}
    for status, response in spec.operation("/process-instances")["responses"].items():
        if int(status) < 400:
            continue
        content = spec.resolve(response)["content"]
        assert list(content) == ["application/problem+json"], (status, list(content))
        schema = content["application/problem+json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ProblemDetail"}
        out[int(status)] = schema
    return out


@pytest.mark.parametrize("version", ["8.8", "8.9"])
def test_every_documented_error_maps_to_its_class(spec88: Spec, spec89: Spec, version: str) -> None:
    spec = spec88 if version == "8.8" else spec89
    documented = documented_errors(spec)
    assert set(documented) == set(EXPECTED[version]), "the spec's error responses changed"
    for status, schema in documented.items():
        title, detail = TITLES[status]
        payload = {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": "/v2/process-instances",
        }
        validate(spec.validator(schema), payload)
        with responses.RequestsMock() as mock:
            mock.post(CREATE, json=payload, status=status, content_type="application/problem+json")
            if status == 409:  # the holder of the business id: someone else's
                mock.post(SEARCH, json={"items": [{"processInstanceKey": "9", "tags": []}]})
                mock.post(SEARCH, json={"items": []})
            with pytest.raises(JobError) as caught:
                engine(version).start(job(), KEY)
        expected = EXPECTED[version][status]
        assert type(caught.value) is expected, (status, caught.value)
        assert caught.value.http_status == status
        assert caught.value.engine_error == payload
        assert title in caught.value.message and detail in caught.value.message


def test_documented_500_with_resource_exhausted_is_transient(spec88: Spec) -> None:
    schema = documented_errors(spec88)[500]
    payload = {
        "type": "about:blank",
        "title": "RESOURCE_EXHAUSTED",
        "status": 500,
        "detail": "Expected to execute the command on one of the partitions, but all failed",
        "instance": "/v2/process-instances",
    }
    validate(spec88.validator(schema), payload)
    with responses.RequestsMock() as mock:
        mock.post(CREATE, json=payload, status=500, content_type="application/problem+json")
        with pytest.raises(TransientError):
            engine("8.8").start(job(), KEY)


def test_the_problem_detail_validator_can_fail(spec88: Spec) -> None:
    validator = spec88.validator(documented_errors(spec88)[400])
    assert errors_of(validator, {"status": 200})
    assert errors_of(validator, {"title": 5})
