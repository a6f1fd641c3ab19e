"""Camunda 7 adapter: request shapes, variable typing, error classes, lookup."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses
from responses import matchers
from urllib3.exceptions import MaxRetryError, NewConnectionError

from worker.engines import build_engine
from worker.engines.base import KEY_VARIABLE
from worker.engines.camunda7 import Camunda7, carried_business_key
from worker.errors import (
    AmbiguousError,
    AuthenticationError,
    Backpressure,
    InvalidJob,
    PermanentError,
    TransientError,
)
from worker.models import Job
from worker.targets import Targets

BASE = "http://c7.test/engine-rest"
TOKEN_URL = "http://idp.test/token"
START = f"{BASE}/process-definition/key/invoice/start"
KEY = "orders:A-17"

TARGETS = Targets.from_dict(
    {
        "targets": {
            "c7": {
                "engine": "camunda7",
                "base_url": BASE,
                "auth": {"type": "basic", "username": "demo", "password": "s3cret"},
            },
            "c7-oauth": {
                "engine": "camunda7",
                "base_url": BASE,
                "auth": {
                    "type": "oauth2",
                    "token_url": TOKEN_URL,
                    "client_id": "worker",
                    "client_secret": "x",
                },
            },
        }
    },
    env={},
)


def engine(target: str = "c7") -> Camunda7:
    adapter = build_engine(TARGETS[target])
    assert isinstance(adapter, Camunda7)
    return adapter


def job(**fields: Any) -> Job:
    return Job.parse({"target": "c7", "process": "invoice", **fields})


def body_of(**fields: Any) -> dict[str, Any]:
    request = engine().build_request(job(**fields), KEY)
    assert isinstance(request.json, dict)
    return request.json


def variable(value: Any, types: str | dict[str, Any] | None = None) -> dict[str, Any]:
    options = {"variable_types": {"v": types}} if types else {}
    result: dict[str, Any] = body_of(variables={"v": value}, options=options)["variables"]["v"]
    return result


# ---------------------------------------------------------------- routes and options


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({}, "/process-definition/key/invoice/start"),
        ({"tenant_id": "acme"}, "/process-definition/key/invoice/tenant-id/acme/start"),
        ({"process": "a/b c"}, "/process-definition/key/a%2Fb%20c/start"),
        ({"tenant_id": "t/1?x"}, "/process-definition/key/invoice/tenant-id/t%2F1%3Fx/start"),
        (
            {"options": {"process_definition_id": "invoice:3:5c1f"}},
            "/process-definition/invoice%3A3%3A5c1f/start",
        ),
    ],
)
def test_routes(fields: dict[str, Any], path: str) -> None:
    request = engine().build_request(job(**fields), KEY)
    assert (request.method, request.path) == ("POST", path)


def test_version_needs_a_definition_id() -> None:
    with pytest.raises(InvalidJob, match="process_definition_id"):
        engine().build_request(job(version=2), KEY)


def test_key_is_the_business_key_when_the_job_has_none() -> None:
    body = body_of(variables={"a": "x"})
    assert body["businessKey"] == KEY
    assert KEY_VARIABLE not in body["variables"]


def test_long_key_is_hashed_to_fit_the_column() -> None:
    long_key = "k" * 400
    carried = carried_business_key(long_key)
    assert len(carried) <= 255 and carried.startswith("startproc:")
    assert carried == carried_business_key(long_key)
    assert engine().build_request(job(), long_key).json["businessKey"] == carried


def test_business_key_kept_and_key_sent_as_string_variable() -> None:
    body = body_of(business_key="A-17")
    assert body["businessKey"] == "A-17"
    assert body["variables"][KEY_VARIABLE] == {"value": KEY, "type": "String", "valueInfo": {}}


def test_reserved_variable_is_refused() -> None:
    with pytest.raises(InvalidJob, match=KEY_VARIABLE):
        body_of(variables={KEY_VARIABLE: "mine"})
    instruction = {"type": "startBeforeActivity", "activityId": "A", "variables": {KEY_VARIABLE: 1}}
    with pytest.raises(InvalidJob, match=KEY_VARIABLE):
        body_of(options={"start_instructions": [instruction]})


def test_flags_and_case_instance() -> None:
    body = body_of(
        options={
            "case_instance_id": "case-1",
            "skip_custom_listeners": True,
            "skip_io_mappings": True,
            "with_variables_in_return": True,
        }
    )
    assert body["caseInstanceId"] == "case-1"
    assert body["skipCustomListeners"] is body["skipIoMappings"] is True
    assert body["withVariablesInReturn"] is True


def test_defaults_send_no_flags() -> None:
    assert set(body_of()) == {"variables", "businessKey"}


def test_start_instructions_pass_through_with_typed_variables() -> None:
    instructions = [
        {"type": "startBeforeActivity", "activityId": "Review", "variables": {"n": 5, "d": "x"}},
        {"type": "startAfterActivity", "activityId": "Check"},
        {"type": "startTransition", "transitionId": "Flow_1"},
    ]
    body = body_of(options={"start_instructions": instructions})
    first, second, third = body["startInstructions"]
    assert first == {
        "type": "startBeforeActivity",
        "activityId": "Review",
        "variables": {
            "n": {"value": 5, "type": "Integer", "valueInfo": {}},
            "d": {"value": "x", "type": "String", "valueInfo": {}},
        },
    }
    assert second == {"type": "startAfterActivity", "activityId": "Check"}
    assert third == {"type": "startTransition", "transitionId": "Flow_1"}


def test_variable_types_apply_to_instruction_variables() -> None:
    options = {
        "start_instructions": [
            {"type": "startBeforeActivity", "activityId": "A", "variables": {"due": "2026-01-02"}}
        ],
        "variable_types": {"due": "Date"},
    }
    body = body_of(options=options)
    assert body["startInstructions"][0]["variables"]["due"]["value"] == (
        "2026-01-02T00:00:00.000+0000"
    )


@pytest.mark.parametrize(
    ("instruction", "message"),
    [
        ({"type": "cancel", "activityId": "A"}, "type"),
        ({"type": "startBeforeActivity"}, "needs activityId"),
        ({"type": "startTransition", "activityId": "A"}, "needs transitionId"),
        ({"type": "startAfterActivity", "activityId": "A", "transitionId": "F"}, "not transition"),
        ({"type": "startBeforeActivity", "activityId": "A", "local": True}, "unknown field"),
    ],
)
def test_bad_start_instructions(instruction: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJob, match=message):
        body_of(options={"start_instructions": [instruction]})


def test_unknown_option_suggests_the_right_one() -> None:
    expected = r"options.skip_io_mapping: unknown field \(did you mean 'skip_io_mappings'\?\)"
    with pytest.raises(InvalidJob, match=expected):
        body_of(options={"skip_io_mapping": True})


# ---------------------------------------------------------------- variable typing


@pytest.mark.parametrize(
    ("value", "expected_type", "expected_value"),
    [
        ("text", "String", "text"),
        ("2026-01-02T03:04:05Z", "String", "2026-01-02T03:04:05Z"),
        (True, "Boolean", True),
        (False, "Boolean", False),
        (0, "Integer", 0),
        (2**31 - 1, "Integer", 2**31 - 1),
        (-(2**31), "Integer", -(2**31)),
        (2**31, "Long", 2**31),
        (-(2**31) - 1, "Long", -(2**31) - 1),
        (2**63 - 1, "Long", 2**63 - 1),
        (-(2**63), "Long", -(2**63)),
        (12.5, "Double", 12.5),
        (None, "Null", None),
        ({"a": [1, "x"]}, "Json", '{"a":[1,"x"]}'),
        ([1, 2], "Json", "[1,2]"),
        ({"ü": "€"}, "Json", '{"ü":"€"}'),
    ],
)
def test_inferred_types(value: Any, expected_type: str, expected_value: Any) -> None:
    assert variable(value) == {"value": expected_value, "type": expected_type, "valueInfo": {}}


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_whole_numbers_beyond_int64_are_invalid(value: int) -> None:
    with pytest.raises(InvalidJob, match=r"variables\.v: .*64-bit"):
        variable(value)


@pytest.mark.parametrize(
    ("value", "override", "expected"),
    [
        ("2026-01-02T03:04:05Z", "Date", "2026-01-02T03:04:05.000+0000"),
        ("2026-01-02T03:04:05.123456+01:00", "Date", "2026-01-02T03:04:05.123+0100"),
        ("2026-01-02T03:04:05-05:30", "Date", "2026-01-02T03:04:05.000-0530"),
        ("2026-01-02T03:04:05", "Date", "2026-01-02T03:04:05.000+0000"),
        ("2026-01-02", "Date", "2026-01-02T00:00:00.000+0000"),
        (42, "String", "42"),
        (True, "String", "true"),
        ("42", "Integer", 42),
        (" -7 ", "Integer", -7),
        (3.0, "Long", 3),
        (2**40, "Long", 2**40),
        (7, "Short", 7),
        (-(2**15), "Short", -(2**15)),
        (3, "Double", 3.0),
        ("1.5", "Double", 1.5),
        ("TRUE", "Boolean", True),
        ("false", "Boolean", False),
        ("plain", "Json", '"plain"'),
        (5, "Json", "5"),
        ({"a": 1}, "Json", '{"a":1}'),
        ("<a/>", "Xml", "<a/>"),
    ],
)
def test_overrides(value: Any, override: str, expected: Any) -> None:
    assert variable(value, override) == {"value": expected, "type": override, "valueInfo": {}}


def test_object_override_needs_and_sends_the_java_type() -> None:
    spec = {"type": "Object", "object_type_name": "java.util.HashMap"}
    assert variable({"a": 1}, spec) == {
        "value": '{"a":1}',
        "type": "Object",
        "valueInfo": {
            "objectTypeName": "java.util.HashMap",
            "serializationDataFormat": "application/json",
        },
    }
    with pytest.raises(InvalidJob, match="object_type_name"):
        variable({"a": 1}, "Object")
    with pytest.raises(InvalidJob, match="object_type_name"):
        variable({"a": 1}, {"type": "Object"})


def test_null_values_keep_the_override_type() -> None:
    assert variable(None, "Date") == {"value": None, "type": "Date", "valueInfo": {}}


@pytest.mark.parametrize(
    ("value", "override", "message"),
    [
        ("yesterday", "Date", "not an ISO 8601"),
        (1767225600000, "Date", "ISO 8601 date string"),
        ("abc", "Integer", "cannot convert"),
        ("--5", "Integer", "cannot convert"),
        (2**31, "Integer", "out of range for Integer"),
        (2**15, "Short", "out of range for Short"),
        (1.5, "Long", "cannot convert"),
        (True, "Integer", "cannot convert"),
        ("x", "Double", "cannot convert"),
        ("nan", "Double", "cannot convert"),
        (False, "Double", "cannot convert"),
        ("yes", "Boolean", "cannot convert"),
        (1, "Boolean", "cannot convert"),
        ({"a": 1}, "String", "use Json"),
        (5, "Xml", "needs a string"),
        ("x", "Null", "only null"),
    ],
)
def test_failed_conversions_name_the_variable(value: Any, override: str, message: str) -> None:
    with pytest.raises(InvalidJob, match=rf"variables\.v: .*{message}"):
        variable(value, override)


def test_override_for_an_unknown_variable_is_a_typo() -> None:
    with pytest.raises(InvalidJob, match=r"options.variable_types.amont: .*'amount'"):
        body_of(variables={"amount": 1}, options={"variable_types": {"amont": "Long"}})


def test_unknown_type_name_is_invalid() -> None:
    with pytest.raises(InvalidJob, match=r"options.variable_types.v"):
        variable(1, "Decimal")


# ---------------------------------------------------------------- start over HTTP


OK = {"id": "pi-1", "definitionId": "invoice:1:abc", "businessKey": KEY, "links": []}


@responses.activate
def test_start_sends_basic_auth_and_returns_the_id() -> None:
    responses.post(START, json=OK)
    started = engine().start(job(variables={"amount": 12.5}), KEY)
    assert (started.instance_id, started.http_status) == ("pi-1", 200)
    sent = responses.calls[0].request
    assert sent.headers["Authorization"].startswith("Basic ")
    assert json.loads(sent.body or b"{}")["variables"]["amount"]["type"] == "Double"


def ambiguous_transport() -> requests.ConnectionError:
    return requests.ConnectionError("connection reset by peer")


def refused() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, START, reason))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "payload", "headers", "error"),
    [
        (
            400,
            {
                "type": "InvalidRequestException",
                "message": "Cannot instantiate process definition invoice:1:abc: Cannot convert "
                "value 'abc' of type 'Integer' to java type java.lang.Integer",
                "code": None,
            },
            {},
            PermanentError,
        ),
        (
            404,
            {
                "type": "RestException",
                "message": "No matching process definition with key: invoice and no tenant-id",
                "code": None,
            },
            {},
            PermanentError,
        ),
        (403, {"type": "AuthorizationException", "message": "denied"}, {}, PermanentError),
        (500, {"type": "RestException", "message": "locked", "code": 1}, {}, TransientError),
        (500, {"type": "RestException", "message": "deadlock", "code": 10000}, {}, TransientError),
        (500, {"type": "RestException", "message": "boom", "code": 0}, {}, PermanentError),
        (500, {"type": "RestException", "message": "no code before 7.18"}, {}, PermanentError),
        (500, {"type": "RestException", "message": "custom", "code": 20000}, {}, PermanentError),
        (429, {"message": "slow down"}, {"Retry-After": "7"}, Backpressure),
        (503, None, {}, Backpressure),
        (502, None, {}, AmbiguousError),
        (504, None, {}, AmbiguousError),
    ],
)
@responses.activate
def test_error_classes(
    status: int, payload: Any, headers: dict[str, str], error: type[Exception]
) -> None:
    responses.post(START, json=payload, status=status, headers=headers)
    with pytest.raises(error) as caught:
        engine().start(job(), KEY)
    assert type(caught.value) is error
    assert caught.value.http_status == status  # type: ignore[attr-defined]
    assert caught.value.engine_error == payload  # type: ignore[attr-defined]
    if headers:
        assert caught.value.retry_after == 7.0  # type: ignore[attr-defined]


@responses.activate
def test_messages_name_type_and_message() -> None:
    responses.post(START, json={"type": "RestException", "message": "No matching"}, status=404)
    with pytest.raises(PermanentError, match="camunda7 answered 404: RestException: No matching"):
        engine().start(job(), KEY)


@responses.activate
def test_401_without_body_is_an_authentication_error_after_one_call() -> None:
    responses.post(START, status=401, headers={"WWW-Authenticate": 'Basic realm="default"'})
    with pytest.raises(AuthenticationError):
        engine().start(job(), KEY)
    assert len(responses.calls) == 1


@responses.activate
def test_oauth2_401_refreshes_the_token_once_and_retries() -> None:
    responses.post(TOKEN_URL, json={"access_token": "t1", "expires_in": 300})
    responses.post(TOKEN_URL, json={"access_token": "t2", "expires_in": 300})
    responses.post(START, status=401)
    responses.post(START, json=OK)
    started = engine("c7-oauth").start(job(target="c7-oauth"), KEY)
    assert started.instance_id == "pi-1"
    token_calls = [c for c in responses.calls if c.request.url == TOKEN_URL]
    start_calls = [c for c in responses.calls if c.request.url == START]
    assert len(token_calls) == 2
    assert [c.request.headers["Authorization"] for c in start_calls] == ["Bearer t1", "Bearer t2"]


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (refused(), TransientError),
        (requests.ConnectTimeout("connect timeout"), TransientError),
        (requests.ReadTimeout("read timeout"), AmbiguousError),
        (ambiguous_transport(), AmbiguousError),
    ],
)
@responses.activate
def test_transport_failures(failure: Exception, error: type[Exception]) -> None:
    responses.post(START, body=failure)
    with pytest.raises(error):
        engine().start(job(), KEY)


@pytest.mark.parametrize("payload", [{"definitionId": "x"}, {"id": ""}, {"id": 5}, "text", None])
@responses.activate
def test_success_without_an_id_is_ambiguous(payload: Any) -> None:
    if isinstance(payload, str):
        responses.post(START, body=payload)
    else:
        responses.post(START, json=payload)
    with pytest.raises(AmbiguousError, match="without an instance id"):
        engine().start(job(), KEY)


# ---------------------------------------------------------------- lookup


RUNTIME = f"{BASE}/process-instance"
HISTORY = f"{BASE}/history/process-instance"


def query(**params: str) -> list[Any]:
    return [matchers.query_param_matcher(params)]


@responses.activate
def test_lookup_by_carried_business_key_in_runtime() -> None:
    responses.get(
        RUNTIME,
        json=[{"id": "pi-7"}],
        match=query(businessKey=KEY, processDefinitionKey="invoice"),
    )
    assert engine().lookup(job(), KEY) == "pi-7"
    assert len(responses.calls) == 1


@responses.activate
def test_lookup_falls_back_to_history_for_finished_instances() -> None:
    responses.get(RUNTIME, json=[])
    responses.get(
        HISTORY,
        json=[{"id": "pi-8", "state": "COMPLETED"}],
        match=query(
            processInstanceBusinessKey=KEY, processDefinitionKey="invoice", tenantIdIn="acme"
        ),
    )
    assert engine().lookup(job(tenant_id="acme"), KEY) == "pi-8"


@responses.activate
def test_lookup_by_definition_id() -> None:
    responses.get(
        RUNTIME, json=[], match=query(businessKey=KEY, processDefinitionId="invoice:3:x")
    )
    responses.get(
        HISTORY,
        json=[],
        match=query(processInstanceBusinessKey=KEY, processDefinitionId="invoice:3:x"),
    )
    assert engine().lookup(job(options={"process_definition_id": "invoice:3:x"}), KEY) is None


def carrying(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {"name": KEY_VARIABLE, "processInstanceId": instance, "value": value, "type": "String"}
        for instance, value in pairs
    ]


@responses.activate
def test_lookup_with_business_key_confirms_the_key_variable() -> None:
    responses.get(
        RUNTIME,
        json=[{"id": "other"}, {"id": "ours"}],
        match=query(businessKey="A-17", processDefinitionKey="invoice"),
    )
    responses.get(
        f"{BASE}/variable-instance",
        json=carrying(("other", "orders:A-16"), ("ours", KEY)),
        match=query(variableName=KEY_VARIABLE, processInstanceIdIn="other,ours"),
    )
    assert engine().lookup(job(business_key="A-17"), KEY) == "ours"
    assert len(responses.calls) == 2


@responses.activate
def test_lookup_with_business_key_confirms_in_history() -> None:
    responses.get(RUNTIME, json=[])
    responses.get(
        HISTORY,
        json=[{"id": "done-1"}, {"id": "done-2"}],
        match=query(processInstanceBusinessKey="A-17", processDefinitionKey="invoice"),
    )
    responses.get(
        f"{BASE}/history/variable-instance",
        json=carrying(("done-2", KEY)),
        match=query(variableName=KEY_VARIABLE, processInstanceIdIn="done-1,done-2"),
    )
    assert engine().lookup(job(business_key="A-17"), KEY) == "done-2"


@responses.activate
def test_lookup_without_a_confirmed_match_is_none() -> None:
    responses.get(RUNTIME, json=[{"id": "someone-else"}])
    responses.get(f"{BASE}/variable-instance", json=[])
    responses.get(HISTORY, json=[{"id": "someone-else"}])
    responses.get(f"{BASE}/history/variable-instance", json=carrying(("someone-else", "k2")))
    assert engine().lookup(job(business_key="A-17"), KEY) is None


@responses.activate
def test_lookup_with_nothing_found_asks_no_variables() -> None:
    responses.get(RUNTIME, json=[])
    responses.get(HISTORY, json=[])
    assert engine().lookup(job(business_key="A-17"), KEY) is None
    assert len(responses.calls) == 2


@responses.activate
def test_lookup_errors_are_classified() -> None:
    responses.get(RUNTIME, status=503)
    with pytest.raises(TransientError):
        engine().lookup(job(), KEY)
