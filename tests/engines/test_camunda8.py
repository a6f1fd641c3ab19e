"""Camunda 8 adapter: request bodies per api_version, options, error classes, auth, lookup.

Everything is mocked at the HTTP transport with `responses`, except the one
test that connects to a closed port on 127.0.0.1 to get a real refusal.
"""

from __future__ import annotations

import base64
import json
import socket
import types
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import responses
from responses import matchers
from urllib3.exceptions import MaxRetryError, NewConnectionError

import worker.engines.http
from tests.support.camunda8 import BASE, engine, job
from worker.engines.base import KEY_VARIABLE, StartRequest, check_sendable
from worker.engines.camunda8 import TAG, key_tag
from worker.errors import (
    AmbiguousError,
    AuthenticationError,
    Backpressure,
    ConflictError,
    InvalidJob,
    JobError,
    PermanentError,
    TransientError,
)
from worker.keys import int64_reference

CREATE = f"{BASE}/v2/process-instances"
SEARCH = f"{BASE}/v2/process-instances/search"
TOKEN_URL = "http://idp.test/oauth/token"
KEY = "orders:A-17"
INSTANCE = "2251799813685249"
OK = {
    "processDefinitionId": "order-process",
    "processDefinitionKey": "2251799813684001",
    "processDefinitionVersion": 3,
    "processInstanceKey": INSTANCE,
    "tenantId": "<default>",
    "variables": {},
    "tags": [],
}
OAUTH = {
    "type": "oauth2",
    "token_url": TOKEN_URL,
    "client_id": "worker",
    "client_secret": "oauth-s3cret",
    "audience": "zeebe-api",
}


def body_of(api_version: str = "8.8", key: str = KEY, **fields: Any) -> dict[str, Any]:
    request = engine(api_version).build_request(job(**fields), key)
    assert (request.method, request.path) == ("POST", "/v2/process-instances")
    assert isinstance(request.json, dict)
    return request.json


def problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": "/v2/process-instances",
    }


# ---------------------------------------------------------------- 8.8 request bodies


def test_88_by_id_is_exactly_the_documented_fields() -> None:
    assert body_of(variables={"orderId": "A-17", "amount": 12.5}) == {
        "processDefinitionId": "order-process",
        "variables": {"orderId": "A-17", "amount": 12.5},
        "operationReference": int64_reference(KEY),
        "tags": [key_tag(KEY)],
    }


def test_88_by_id_with_version() -> None:
    body = body_of(version=3)
    assert body["processDefinitionId"] == "order-process"
    assert body["processDefinitionVersion"] == 3


def test_88_without_version_sends_no_version() -> None:
    assert "processDefinitionVersion" not in body_of()


@pytest.mark.parametrize("definition_key", ["2251799813686749", 2251799813686749, "-1"])
def test_88_by_key_sends_the_key_as_a_string(definition_key: str | int) -> None:
    body = body_of(options={"process_definition_key": definition_key})
    assert body["processDefinitionKey"] == str(definition_key)
    assert isinstance(body["processDefinitionKey"], str)
    assert "processDefinitionId" not in body
    assert "processDefinitionVersion" not in body


def test_by_key_never_sends_a_version_field() -> None:
    body = body_of(version=2, options={"process_definition_key": "2251799813686749"})
    assert set(body) == {"processDefinitionKey", "variables", "operationReference", "tags"}


@pytest.mark.parametrize("definition_key", ["abc", "12a", "", " 1", 1.5, True, ["1"]])
def test_bad_definition_key_is_invalid(definition_key: Any) -> None:
    with pytest.raises(InvalidJob, match=r"options\.process_definition_key"):
        body_of(options={"process_definition_key": definition_key})


def test_88_never_sends_business_id() -> None:
    body = body_of(business_key="A-17")
    assert "businessId" not in body


def test_tenant_id() -> None:
    assert body_of(tenant_id="acme")["tenantId"] == "acme"
    assert "tenantId" not in body_of()


def test_build_request_does_not_mutate_the_job() -> None:
    j = job(variables={"a": 1})
    engine("8.6").build_request(j, KEY)
    assert j.variables == {"a": 1}


# ---------------------------------------------------------------- 8.9 businessId


def test_89_business_id_from_option() -> None:
    body = body_of("8.9", business_key="A-17", options={"business_id": "order-A-17"})
    assert body["businessId"] == "order-A-17"
    assert body["tags"] == [key_tag(KEY)]


def test_89_business_id_defaults_to_business_key() -> None:
    assert body_of("8.9", business_key="A-17")["businessId"] == "A-17"


def test_89_without_a_business_key_sends_the_idempotency_key() -> None:
    """The engine's uniqueness control then refuses a second active instance for the key."""
    assert body_of("8.9")["businessId"] == KEY


def test_89_a_key_longer_than_a_business_id_is_sent_as_its_tag() -> None:
    key = "k" * 257
    assert body_of("8.9", key=key)["businessId"] == key_tag(key)
    assert body_of("8.9", key="k" * 256)["businessId"] == "k" * 256


@pytest.mark.parametrize("value", ["", "x" * 257, 17])
def test_89_bad_business_id_is_invalid(value: Any) -> None:
    with pytest.raises(InvalidJob, match=r"options\.business_id"):
        body_of("8.9", options={"business_id": value})


# ---------------------------------------------------------------- 8.6 and 8.6-alpha


def test_86_by_id_carries_the_key_in_a_variable_and_no_tags() -> None:
    assert body_of("8.6", version=2, variables={"a": 1}) == {
        "processDefinitionId": "order-process",
        "processDefinitionVersion": 2,
        "variables": {"a": 1, KEY_VARIABLE: KEY},
        "operationReference": int64_reference(KEY),
    }


@pytest.mark.parametrize("definition_key", ["2251799813686749", 2251799813686749])
def test_86_by_key_sends_a_json_number(definition_key: str | int) -> None:
    body = body_of("8.6", options={"process_definition_key": definition_key})
    assert body["processDefinitionKey"] == 2251799813686749
    assert type(body["processDefinitionKey"]) is int


def test_86_alpha_uses_bpmn_process_id_and_version() -> None:
    assert body_of("8.6-alpha", version=4, variables={"a": 1}) == {
        "bpmnProcessId": "order-process",
        "version": 4,
        "variables": {"a": 1, KEY_VARIABLE: KEY},
    }


def test_86_alpha_without_version_and_by_key() -> None:
    assert "version" not in body_of("8.6-alpha")
    body = body_of("8.6-alpha", options={"process_definition_key": "2251799813686749"})
    assert body["processDefinitionKey"] == 2251799813686749
    assert "bpmnProcessId" not in body


@pytest.mark.parametrize("api_version", ["8.6", "8.6-alpha"])
def test_tags_need_88(api_version: str) -> None:
    with pytest.raises(InvalidJob, match=r"options\.tags: needs api_version 8\.8"):
        body_of(api_version, options={"tags": ["vip"]})


@pytest.mark.parametrize("api_version", ["8.8", "8.6", "8.6-alpha"])
def test_business_id_needs_89(api_version: str) -> None:
    with pytest.raises(InvalidJob, match=r"options\.business_id: needs api_version 8\.9"):
        body_of(api_version, options={"business_id": "b-1"})


@pytest.mark.parametrize("api_version", ["8.8", "8.9", "8.6", "8.6-alpha"])
def test_reserved_key_variable_is_invalid(api_version: str) -> None:
    with pytest.raises(InvalidJob, match=f"variables.{KEY_VARIABLE}: reserved"):
        body_of(api_version, variables={KEY_VARIABLE: "mine"})


# ---------------------------------------------------------------- tags


def test_user_tags_come_first_then_the_key_tag() -> None:
    body = body_of(options={"tags": ["vip", "region:eu-west.1"]})
    assert body["tags"] == ["vip", "region:eu-west.1", key_tag(KEY)]


def test_nine_user_tags_fill_the_ten_allowed() -> None:
    tags = [f"t{i}" for i in range(9)]
    body = body_of(options={"tags": tags})
    assert body["tags"] == [*tags, key_tag(KEY)]
    assert len(body["tags"]) == 10


def test_ten_user_tags_are_invalid() -> None:
    with pytest.raises(InvalidJob, match=r"options\.tags"):
        body_of(options={"tags": [f"t{i}" for i in range(10)]})


def test_duplicate_tags_are_invalid() -> None:
    with pytest.raises(InvalidJob, match=r"options\.tags.*unique"):
        body_of(options={"tags": ["vip", "vip"]})


@pytest.mark.parametrize(
    "tag", ["1abc", "has space", "", "a" * 101, "ümlaut", "-x", "x/y", "tag\n", 7, None]
)
def test_bad_tag_is_invalid(tag: Any) -> None:
    with pytest.raises(InvalidJob, match=r"options\.tags\[0\]"):
        body_of(options={"tags": [tag]})


def test_longest_allowed_tag() -> None:
    tag = "a" * 100
    assert body_of(options={"tags": [tag]})["tags"][0] == tag


@pytest.mark.parametrize("key", [KEY, "k" * 512, "ключ:Ä/ß?&=#", "job:0b7c-…", " "])
def test_key_tag_fits_the_tag_pattern_and_is_stable(key: str) -> None:
    tag = key_tag(key)
    assert TAG.match(tag) and len(tag) <= 100
    assert tag.startswith("startproc:")
    assert tag == key_tag(key)
    assert body_of(key=key)["tags"] == [tag]


def test_key_tags_differ_per_key() -> None:
    keys = [f"orders:A-{i}" for i in range(500)]
    assert len({key_tag(k) for k in keys}) == len(keys)


# ---------------------------------------------------------------- operationReference


@pytest.mark.parametrize("api_version", ["8.8", "8.9", "8.6"])
def test_operation_reference_is_a_positive_int64_stable_per_key(api_version: str) -> None:
    one, other = engine(api_version), engine(api_version)
    references = set()
    for i in range(200):
        key = f"orders:A-{i}"
        first = one.build_request(job(), key).json["operationReference"]
        again = other.build_request(job(variables={"x": i}), key).json["operationReference"]
        assert type(first) is int
        assert 1 <= first <= 2**63 - 1
        assert again == first
        references.add(first)
    assert len(references) == 200


def test_operation_reference_is_derived_from_the_key_only() -> None:
    a = body_of(key=KEY, variables={"a": 1}, tenant_id="acme")["operationReference"]
    b = body_of(key=KEY, options={"tags": ["x"]})["operationReference"]
    assert a == b == int64_reference(KEY)


# ---------------------------------------------------------------- other options


def test_start_instructions_from_strings_and_dicts() -> None:
    body = body_of(
        options={"start_instructions": ["Task_A", {"elementId": "Task_B"}, {"element_id": "C"}]}
    )
    assert body["startInstructions"] == [
        {"elementId": "Task_A"},
        {"elementId": "Task_B"},
        {"elementId": "C"},
    ]


def test_no_start_instructions_sends_none() -> None:
    assert "startInstructions" not in body_of(options={"start_instructions": []})


@pytest.mark.parametrize(
    "instructions", [[{}], [""], [{"elementId": ""}], [{"elementID": "x"}], [5], [{"elementId": 5}]]
)
def test_bad_start_instructions_are_invalid(instructions: Any) -> None:
    with pytest.raises(InvalidJob, match=r"options\.start_instructions"):
        body_of(options={"start_instructions": instructions})


def test_await_completion_with_fetch_variables_and_timeout() -> None:
    body = body_of(
        options={"await_completion": True, "fetch_variables": ["total"], "request_timeout": 30000}
    )
    assert body["awaitCompletion"] is True
    assert body["fetchVariables"] == ["total"]
    assert body["requestTimeout"] == 30000


def test_await_completion_without_fetch_variables() -> None:
    body = body_of(options={"await_completion": True})
    assert body["awaitCompletion"] is True
    assert "fetchVariables" not in body
    assert "requestTimeout" not in body


def test_await_completion_false_sends_nothing() -> None:
    body = body_of(options={"await_completion": False})
    assert "awaitCompletion" not in body


def test_request_timeout_zero_is_sent() -> None:
    assert body_of(options={"request_timeout": 0})["requestTimeout"] == 0


def test_fetch_variables_without_await_completion_is_invalid() -> None:
    with pytest.raises(InvalidJob, match=r"options\.fetch_variables: only meaningful"):
        body_of(options={"fetch_variables": ["total"]})


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"await_completion": "yes"}, "await_completion"),
        ({"await_completion": 1}, "await_completion"),
        ({"request_timeout": -1}, "request_timeout"),
        ({"request_timeout": "10"}, "request_timeout"),
        ({"fetch_variables": "total", "await_completion": True}, "fetch_variables"),
        ({"tags": "vip"}, "tags"),
    ],
)
def test_mistyped_options_are_invalid(options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidJob, match=rf"options\.{field}"):
        body_of(options=options)


@pytest.mark.parametrize(
    ("option", "suggestion"),
    [
        ("tgas", "tags"),
        ("buisness_id", "business_id"),
        ("await_complete", "await_completion"),
        ("requestTimeout", "request_timeout"),
    ],
)
def test_unknown_option_suggests_the_right_one(option: str, suggestion: str) -> None:
    with pytest.raises(InvalidJob) as caught:
        body_of(options={option: 1})
    assert f"options.{option}: unknown field (did you mean '{suggestion}'?)" in str(caught.value)


def test_unknown_option_without_a_close_match() -> None:
    with pytest.raises(InvalidJob, match=r"options\.zzz: unknown field$"):
        body_of(options={"zzz": 1})


# ---------------------------------------------------------------- responses: success


@pytest.mark.parametrize("key_value", [INSTANCE, int(INSTANCE), 1])
@responses.activate
def test_200_returns_the_instance_key_as_a_string(key_value: str | int) -> None:
    responses.post(CREATE, json={**OK, "processInstanceKey": key_value})
    started = engine().start(job(), KEY)
    assert started.instance_id == str(key_value)
    assert started.http_status == 200
    assert started.body["processInstanceKey"] == key_value


@responses.activate
def test_start_posts_json_to_the_documented_path() -> None:
    responses.post(CREATE, json=OK)
    engine().start(job(variables={"a": 1}), KEY)
    [call] = responses.calls
    assert call.request.method == "POST"
    assert call.request.url == CREATE
    assert call.request.headers["Content-Type"] == "application/json"
    assert json.loads(call.request.body or b"{}")["variables"] == {"a": 1}


@pytest.mark.parametrize(
    "payload",
    [
        {k: v for k, v in OK.items() if k != "processInstanceKey"},
        {**OK, "processInstanceKey": None},
        {**OK, "processInstanceKey": True},
        {**OK, "processInstanceKey": 1.5},
        {**OK, "processInstanceKey": {"id": 1}},
        [OK],
        "created",
        None,
    ],
)
@responses.activate
def test_200_without_a_key_is_ambiguous(payload: Any) -> None:
    if payload is None:
        responses.post(CREATE, body=b"")
    elif isinstance(payload, str):
        responses.post(CREATE, body=payload)
    else:
        responses.post(CREATE, json=payload)
    with pytest.raises(AmbiguousError, match="without an instance id") as caught:
        engine().start(job(), KEY)
    assert caught.value.http_status == 200


@responses.activate
def test_200_with_an_empty_key_is_ambiguous() -> None:
    responses.post(CREATE, json={**OK, "processInstanceKey": ""})
    with pytest.raises(AmbiguousError):
        engine().start(job(), KEY)


# ---------------------------------------------------------------- responses: errors


@pytest.mark.parametrize(
    ("status", "title", "detail"),
    [
        (400, "INVALID_ARGUMENT", "Request property [processDefinitionVersion] cannot be parsed"),
        (403, "FORBIDDEN", "Unauthorized to perform operation 'CREATE_PROCESS_INSTANCE'"),
        (
            404,
            "NOT_FOUND",
            "Command 'CREATE' rejected with code 'NOT_FOUND': Expected to find process "
            "definition with process ID 'order-process', but none found",
        ),
        (409, "ALREADY_EXISTS", "business id 'A-17' is already in use"),
    ],
)
@responses.activate
def test_client_errors_are_permanent_and_keep_the_problem(
    status: int, title: str, detail: str
) -> None:
    payload = problem(status, title, detail)
    responses.post(CREATE, json=payload, status=status, content_type="application/problem+json")
    with pytest.raises(PermanentError) as caught:
        engine().start(job(), KEY)
    error = caught.value
    assert type(error) is PermanentError
    assert error.http_status == status
    assert error.engine_error == payload
    assert error.message == f"camunda8 answered {status}: {title}: {detail}"
    assert error.as_error_info()["kind"] == "permanent"


@responses.activate
def test_problem_with_only_a_title() -> None:
    responses.post(CREATE, json={"title": "FORBIDDEN", "status": 403}, status=403)
    with pytest.raises(PermanentError, match=r"^camunda8 answered 403: FORBIDDEN$"):
        engine().start(job(), KEY)


@responses.activate
def test_error_without_a_body() -> None:
    responses.post(CREATE, status=404)
    with pytest.raises(PermanentError, match=r"^camunda8 answered 404$") as caught:
        engine().start(job(), KEY)
    assert caught.value.engine_error is None


@pytest.mark.parametrize("status", [429, 503])
@responses.activate
def test_backpressure_with_retry_after_seconds(status: int) -> None:
    payload = problem(status, "RESOURCE_EXHAUSTED", "all partitions are busy")
    responses.post(CREATE, json=payload, status=status, headers={"Retry-After": "7"})
    with pytest.raises(TransientError) as caught:
        engine().start(job(), KEY)
    assert caught.value.retry_after == 7.0
    assert caught.value.http_status == status
    assert caught.value.engine_error == payload
    assert "RESOURCE_EXHAUSTED" in caught.value.message


NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("status", [429, 503])
@responses.activate
def test_backpressure_with_retry_after_http_date(
    status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker.engines.http, "time", types.SimpleNamespace(time=lambda: NOW))
    responses.post(CREATE, status=status, headers={"Retry-After": "Wed, 25 Nov 2026 10:02:00 GMT"})
    with pytest.raises(TransientError) as caught:
        engine().start(job(), KEY)
    assert caught.value.retry_after == 120.0


@pytest.mark.parametrize("status", [429, 503])
@responses.activate
def test_backpressure_without_retry_after(status: int) -> None:
    responses.post(CREATE, json=problem(status, "RESOURCE_EXHAUSTED", "busy"), status=status)
    with pytest.raises(TransientError) as caught:
        engine().start(job(), KEY)
    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    "payload",
    [
        problem(
            500,
            "RESOURCE_EXHAUSTED",
            "Expected to execute the command on one of the partitions, but all failed",
        ),
        problem(500, "INTERNAL", "gRPC status RESOURCE_EXHAUSTED from the broker"),
    ],
)
@responses.activate
def test_500_resource_exhausted_is_transient(payload: dict[str, Any]) -> None:
    responses.post(CREATE, json=payload, status=500)
    with pytest.raises(TransientError) as caught:
        engine().start(job(), KEY)
    assert type(caught.value) is Backpressure  # a TransientError that slows the target
    assert caught.value.http_status == 500
    assert caught.value.engine_error == payload
    assert "RESOURCE_EXHAUSTED" in caught.value.message


@responses.activate
def test_500_resource_exhausted_message_does_not_claim_the_instance_may_exist() -> None:
    responses.post(CREATE, json=problem(500, "RESOURCE_EXHAUSTED", "busy"), status=500)
    with pytest.raises(TransientError) as caught:
        engine().start(job(), KEY)
    assert "may exist" not in caught.value.message


@pytest.mark.parametrize(
    ("status", "payload"),
    [
        (500, problem(500, "INTERNAL", "Unexpected error occurred during the request processing")),
        (500, "<html>Internal Server Error</html>"),
        (502, "<html>Bad Gateway</html>"),
        (502, None),
        (504, problem(504, "DEADLINE_EXCEEDED", "Timed out waiting for the instance to complete")),
        (504, None),
    ],
)
@responses.activate
def test_plain_5xx_is_ambiguous(status: int, payload: Any) -> None:
    if isinstance(payload, dict):
        responses.post(CREATE, json=payload, status=status)
    else:
        responses.post(CREATE, body=payload or b"", status=status)
    with pytest.raises(AmbiguousError, match="may exist") as caught:
        engine().start(job(), KEY)
    assert caught.value.http_status == status
    assert caught.value.engine_error == payload


# ---------------------------------------------------------------- transport


def refused(url: str = CREATE) -> requests.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, url, reason))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (refused(), TransientError),
        (requests.ConnectTimeout("connect timeout"), TransientError),
        (requests.ReadTimeout("read timeout"), AmbiguousError),
        (requests.ConnectionError("Connection aborted: RemoteDisconnected"), AmbiguousError),
        (requests.exceptions.ChunkedEncodingError("connection broken"), AmbiguousError),
    ],
)
@responses.activate
def test_transport_failures(failure: Exception, error: type[JobError]) -> None:
    responses.post(CREATE, body=failure)
    with pytest.raises(error) as caught:
        engine().start(job(), KEY)
    assert type(caught.value) is error


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_real_refused_connection_is_transient() -> None:
    adapter = engine(base_url=f"http://127.0.0.1:{closed_port()}", connect_timeout=2)
    with pytest.raises(TransientError, match="could not connect"):
        adapter.start(job(), KEY)


# ---------------------------------------------------------------- auth


def token_calls() -> list[Any]:
    return [c for c in responses.calls if c.request.url == TOKEN_URL]


def create_calls() -> list[Any]:
    return [c for c in responses.calls if c.request.url == CREATE]


@responses.activate
def test_oauth2_401_refetches_the_token_once_and_succeeds() -> None:
    responses.post(TOKEN_URL, json={"access_token": "t1", "expires_in": 300})
    responses.post(TOKEN_URL, json={"access_token": "t2", "expires_in": 300})
    responses.post(CREATE, json=problem(401, "UNAUTHORIZED", "expired"), status=401)
    responses.post(CREATE, json=OK)
    started = engine(auth=OAUTH).start(job(), KEY)
    assert started.instance_id == INSTANCE
    assert len(token_calls()) == 2
    headers = [c.request.headers["Authorization"] for c in create_calls()]
    assert headers == ["Bearer t1", "Bearer t2"]


@responses.activate
def test_oauth2_token_is_reused_across_starts() -> None:
    responses.post(TOKEN_URL, json={"access_token": "t1", "expires_in": 300})
    responses.post(CREATE, json=OK)
    adapter = engine(auth=OAUTH)
    for _ in range(3):
        adapter.start(job(), KEY)
    assert len(token_calls()) == 1
    assert len(create_calls()) == 3


@responses.activate
def test_oauth2_401_twice_is_an_authentication_error() -> None:
    responses.post(TOKEN_URL, json={"access_token": "t1", "expires_in": 300})
    responses.post(TOKEN_URL, json={"access_token": "t2", "expires_in": 300})
    payload = problem(401, "UNAUTHORIZED", "The token is not valid")
    responses.post(CREATE, json=payload, status=401)
    with pytest.raises(AuthenticationError) as caught:
        engine(auth=OAUTH).start(job(), KEY)
    assert caught.value.http_status == 401
    assert caught.value.engine_error == payload
    assert len(token_calls()) == 2
    assert len(create_calls()) == 2


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "basic", "username": "demo", "password": "demo-pw"},
        {"type": "bearer", "token": "static-token"},
        None,
    ],
)
@responses.activate
def test_401_without_refreshable_credentials_is_not_retried(auth: dict[str, str] | None) -> None:
    responses.post(CREATE, status=401)
    adapter = engine(auth=auth) if auth else engine()
    with pytest.raises(AuthenticationError):
        adapter.start(job(), KEY)
    assert len(responses.calls) == 1


@responses.activate
def test_basic_auth_header() -> None:
    responses.post(CREATE, json=OK)
    engine(auth={"type": "basic", "username": "demo", "password": "demo-pw"}).start(job(), KEY)
    expected = "Basic " + base64.b64encode(b"demo:demo-pw").decode()
    assert responses.calls[0].request.headers["Authorization"] == expected


@responses.activate
def test_bearer_auth_header() -> None:
    responses.post(CREATE, json=OK)
    engine(auth={"type": "bearer", "token": "static-token"}).start(job(), KEY)
    assert responses.calls[0].request.headers["Authorization"] == "Bearer static-token"


@responses.activate
def test_no_auth_sends_no_authorization_header() -> None:
    responses.post(CREATE, json=OK)
    engine().start(job(), KEY)
    assert "Authorization" not in responses.calls[0].request.headers


# ---------------------------------------------------------------- lookup


def search(body: dict[str, Any]) -> list[Any]:
    return [matchers.json_params_matcher(body, strict_match=True)]


@pytest.mark.parametrize("api_version", ["8.8", "8.9"])
@responses.activate
def test_lookup_by_key_tag(api_version: str) -> None:
    responses.post(
        SEARCH,
        json={"items": [{"processInstanceKey": INSTANCE}], "page": {"totalItems": 1}},
        match=search({"filter": {"tags": [key_tag(KEY)]}}),
    )
    assert engine(api_version).lookup(job(), KEY) == INSTANCE


@responses.activate
def test_lookup_by_tag_finds_nothing() -> None:
    responses.post(SEARCH, json={"items": [], "page": {"totalItems": 0}})
    assert engine().lookup(job(), KEY) is None


@pytest.mark.parametrize("api_version", ["8.6", "8.6-alpha"])
@pytest.mark.parametrize("key", [KEY, 'say "hi" \\ ü'])
@responses.activate
def test_lookup_by_variable_with_a_json_serialized_value(api_version: str, key: str) -> None:
    expected = {"filter": {"variables": [{"name": KEY_VARIABLE, "value": json.dumps(key)}]}}
    responses.post(
        SEARCH,
        json={"items": [{"processInstanceKey": int(INSTANCE)}], "page": {"totalItems": 1}},
        match=search(expected),
    )
    assert engine(api_version).lookup(job(), key) == INSTANCE


@responses.activate
def test_lookup_by_variable_finds_nothing() -> None:
    responses.post(SEARCH, json={"items": []})
    assert engine("8.6").lookup(job(), KEY) is None


@responses.activate
def test_lookup_with_an_empty_body_is_not_taken_as_nothing_found() -> None:
    """An empty answer is not a search result: resending on it could double-start."""
    responses.post(SEARCH, body=b"")
    with pytest.raises(AmbiguousError):
        engine().lookup(job(), KEY)


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, PermanentError), (403, PermanentError), (500, AmbiguousError), (503, TransientError)],
)
@responses.activate
def test_lookup_errors_are_classified(status: int, error: type[JobError]) -> None:
    responses.post(SEARCH, json=problem(status, "X", "search failed"), status=status)
    with pytest.raises(error):
        engine().lookup(job(), KEY)


@responses.activate
def test_lookup_transport_failure_is_classified() -> None:
    responses.post(SEARCH, body=refused(SEARCH))
    with pytest.raises(TransientError):
        engine().lookup(job(), KEY)


@responses.activate
def test_lookup_refreshes_an_oauth2_token_on_401() -> None:
    responses.post(TOKEN_URL, json={"access_token": "t1", "expires_in": 300})
    responses.post(TOKEN_URL, json={"access_token": "t2", "expires_in": 300})
    responses.post(SEARCH, status=401)
    responses.post(SEARCH, json={"items": [{"processInstanceKey": INSTANCE}]})
    assert engine(auth=OAUTH).lookup(job(), KEY) == INSTANCE
    assert len(token_calls()) == 2


@responses.activate
def test_lookup_with_a_non_json_error_page_raises_a_job_error() -> None:
    responses.post(SEARCH, body="<html><h1>502 Bad Gateway</h1></html>", status=502)
    with pytest.raises(AmbiguousError):
        engine().lookup(job(), KEY)


# ---------------------------------------------------------------- 8.9 business id clash (409)

CLASH = problem(
    409,
    "ALREADY_EXISTS",
    "Expected to create process instance with business id 'A-17', but an active instance "
    "with this business id already exists",
)
HOLDER_SEARCH = {
    "filter": {
        "businessId": "A-17",
        "state": "ACTIVE",
        "parentProcessInstanceKey": {"$exists": False},
        "processDefinitionId": "order-process",
    }
}


def holder(instance: str, tags: list[str]) -> dict[str, Any]:
    return {
        "processInstanceKey": instance,
        "processDefinitionId": "order-process",
        "state": "ACTIVE",
        "businessId": "A-17",
        "tags": tags,
    }


def clash_then(*searches: dict[str, Any]) -> None:
    responses.post(CREATE, json=CLASH, status=409, content_type="application/problem+json")
    for found in searches:
        responses.post(SEARCH, **found)


@responses.activate
def test_89_a_409_for_our_own_lost_attempt_is_that_instance() -> None:
    clash_then({"json": {"items": [holder(INSTANCE, ["vip", key_tag(KEY)])]},
                "match": search(HOLDER_SEARCH)})
    started = engine("8.9").start(job(business_key="A-17"), KEY)
    assert started.instance_id == INSTANCE
    assert started.http_status == 409


@responses.activate
def test_89_a_409_for_another_instance_is_a_conflict_naming_it() -> None:
    clash_then(
        {"json": {"items": [holder("999", ["startproc:someone-else"])]},
         "match": search(HOLDER_SEARCH)},
        {"json": {"items": []}, "match": search({"filter": {"tags": [key_tag(KEY)]}})},
    )
    with pytest.raises(ConflictError) as caught:
        engine("8.9").start(job(business_key="A-17"), KEY)
    error = caught.value
    assert error.existing_instance_id == "999"
    assert error.http_status == 409 and error.engine_error == CLASH
    assert "999" in error.message and "ALREADY_EXISTS" in error.message
    info = error.as_error_info()
    assert info["kind"] == "conflict" and info["existing_instance_id"] == "999"


@responses.activate
def test_89_our_instance_found_by_its_tag_beside_another_holder_is_ours() -> None:
    """Ours completed before the other one started: the holder is not ours, ours exists."""
    clash_then(
        {"json": {"items": [holder("999", [])]}, "match": search(HOLDER_SEARCH)},
        {"json": {"items": [{"processInstanceKey": INSTANCE, "state": "COMPLETED"}]},
         "match": search({"filter": {"tags": [key_tag(KEY)]}})},
    )
    assert engine("8.9").start(job(business_key="A-17"), KEY).instance_id == INSTANCE


@pytest.mark.parametrize(
    "found",
    [
        {"json": {"items": []}},  # completed meanwhile, or not searchable yet
        {"json": problem(503, "RESOURCE_EXHAUSTED", "busy"), "status": 503},
        {"body": refused(SEARCH)},
        {"json": {"items": [{"state": "ACTIVE"}]}},
    ],
    ids=["no holder found", "search busy", "search unreachable", "holder without a key"],
)
@responses.activate
def test_89_a_409_whose_holder_is_not_known_is_ambiguous(found: dict[str, Any]) -> None:
    """Never re-sent blindly: the holder may be ours and complete before a resend."""
    clash_then(found)
    with pytest.raises(AmbiguousError, match="business id") as caught:
        engine("8.9").start(job(business_key="A-17"), KEY)
    assert caught.value.http_status == 409 and caught.value.engine_error == CLASH


@responses.activate
def test_89_holder_search_is_scoped_like_the_uniqueness() -> None:
    """Per process definition and tenant, root instances only."""
    expected = {
        "filter": {
            "businessId": "order-A-17",
            "state": "ACTIVE",
            "parentProcessInstanceKey": {"$exists": False},
            "processDefinitionKey": "2251799813686749",
            "tenantId": "acme",
        }
    }
    clash_then({"json": {"items": [holder("7", [key_tag(KEY)])]}, "match": search(expected)})
    options = {"business_id": "order-A-17", "process_definition_key": "2251799813686749"}
    started = engine("8.9").start(job(tenant_id="acme", options=options), KEY)
    assert started.instance_id == "7"


@pytest.mark.parametrize("api_version", ["8.8", "8.6"])
@responses.activate
def test_409_before_89_stays_permanent_without_a_search(api_version: str) -> None:
    responses.post(CREATE, json=CLASH, status=409)
    with pytest.raises(PermanentError) as caught:
        engine(api_version).start(job(business_key="A-17"), KEY)
    assert type(caught.value) is PermanentError
    assert [c.request.url for c in responses.calls] == [CREATE]


def test_a_body_requests_cannot_encode_is_invalid_not_a_lost_connection() -> None:
    """NaN is no JSON number: requests refuses it while preparing, before anything is sent."""
    request = StartRequest("POST", "/v2/process-instances", json={"variables": {"x": float("nan")}})
    with pytest.raises(InvalidJob, match="NaN"):
        check_sendable(request)
    with pytest.raises(InvalidJob, match="cannot be sent"):
        engine().execute(request)  # the same refusal inside a send, had it got that far
