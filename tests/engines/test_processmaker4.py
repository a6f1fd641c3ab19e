"""ProcessMaker 4 adapter: request shape, Laravel errors, the 500 rule, PMQL lookup."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses
from responses import matchers
from urllib3.exceptions import NewConnectionError

from worker.engines import build_engine
from worker.engines.base import KEY_VARIABLE
from worker.engines.processmaker4 import ProcessMaker4, pmql_string
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

API = "http://pm.test/api/1.0"
TOKEN_URL = "http://pm.test/oauth/token"
START = f"{API}/process_events/12"
KEY = "job:7f3a"

TARGETS = Targets.from_dict(
    {
        "targets": {
            "pm": {
                "engine": "processmaker4",
                "base_url": API,
                "auth": {"type": "bearer", "token": "${PM_TOKEN}"},
            },
            "pm-password": {
                "engine": "processmaker4",
                "base_url": API,
                "auth": {
                    "type": "oauth2",
                    "grant": "password",
                    "token_url": TOKEN_URL,
                    "client_id": "2",
                    "client_secret": "cs",
                    "username": "admin",
                    "password": "pw",
                },
            },
        }
    },
    env={"PM_TOKEN": "pat-123"},
)
CREATED = {
    "id": 345,
    "process_id": 12,
    "user_id": 1,
    "status": "ACTIVE",
    "name": "Leave request",
    "initiated_at": "2026-11-25T10:00:00+00:00",
    "created_at": "2026-11-25T10:00:00+00:00",
    "updated_at": "2026-11-25T10:00:00+00:00",
}


def engine(target: str = "pm") -> ProcessMaker4:
    adapter = build_engine(TARGETS[target])
    assert isinstance(adapter, ProcessMaker4)
    return adapter


def job(**fields: Any) -> Job:
    return Job.parse({"target": "pm", "process": 12, "options": {"event": "node_1"}, **fields})


# ---------------------------------------------------------------- request


def test_request_carries_variables_and_key() -> None:
    request = engine().build_request(job(variables={"days": 3, "who": {"id": 9}}), KEY)
    assert (request.method, request.path) == ("POST", "/process_events/12")
    assert request.params == {"event": "node_1"}
    assert request.json == {"days": 3, "who": {"id": 9}, KEY_VARIABLE: KEY}
    assert request.headers["Accept"] == "application/json"


def test_without_event_no_query_parameter_is_sent() -> None:
    request = engine().build_request(job(options={}), KEY)
    assert request.params == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"process": "leave-request"}, "positive integers"),
        ({"process": "-3"}, "positive integers"),
        ({"process": "0"}, "positive integers"),
        ({"version": 2}, "version"),
        ({"tenant_id": "acme"}, "tenant_id"),
        ({"variables": {KEY_VARIABLE: "x"}}, "reserved"),
        ({"options": {"evnt": "node_1"}}, "did you mean 'event'"),
        ({"options": {"event": ""}}, "options.event"),
        ({"options": {"event": 5}}, "options.event"),
    ],
)
def test_invalid_jobs(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJob, match=message):
        engine().build_request(job(**fields), KEY)


# ---------------------------------------------------------------- start over HTTP


@responses.activate
def test_created_with_bearer_token() -> None:
    responses.post(
        START,
        json=CREATED,
        status=201,
        match=[
            matchers.query_param_matcher({"event": "node_1"}),
            matchers.header_matcher({"Authorization": "Bearer pat-123"}),
        ],
    )
    started = engine().start(job(variables={"days": 3}), KEY)
    assert (started.instance_id, started.http_status) == ("345", 201)
    assert json.loads(responses.calls[0].request.body or b"{}")[KEY_VARIABLE] == KEY


@pytest.mark.parametrize("value", ["abc-1", 0])
@responses.activate
def test_string_and_zero_ids(value: Any) -> None:
    responses.post(START, json={**CREATED, "id": value}, status=201)
    assert engine().start(job(), KEY).instance_id == str(value)


@pytest.mark.parametrize("payload", [{"status": "ACTIVE"}, {"id": None}, {"id": True}, [1]])
@responses.activate
def test_created_without_id_is_ambiguous(payload: Any) -> None:
    responses.post(START, json=payload, status=201)
    with pytest.raises(AmbiguousError):
        engine().start(job(), KEY)


LARAVEL_422 = {
    "message": "The given data was invalid.",
    "errors": {"days": ["The days must be an integer."], "who": ["The who field is required."]},
}


@responses.activate
def test_422_is_an_invalid_job_with_the_field_errors() -> None:
    responses.post(START, json=LARAVEL_422, status=422)
    with pytest.raises(InvalidJob) as caught:
        engine().start(job(), KEY)
    assert caught.value.kind == "invalid"
    assert caught.value.http_status == 422
    assert caught.value.engine_error == LARAVEL_422
    assert "days: The days must be an integer." in caught.value.message
    assert "who: The who field is required." in caught.value.message


@pytest.mark.parametrize(
    ("status", "payload", "error", "message"),
    [
        (404, {"error": "Not Found"}, PermanentError, "options.event missing"),
        (403, {"message": "This action is unauthorized."}, PermanentError, "unauthorized"),
        (400, {"message": "Bad"}, PermanentError, "Bad"),
        (401, {"error": "Unauthenticated."}, AuthenticationError, "Unauthenticated"),
        (429, {"message": "Too Many Attempts."}, Backpressure, "Too Many"),
        (503, {"message": "Service Unavailable"}, Backpressure, "Unavailable"),
        (502, None, AmbiguousError, "may exist"),
        (504, None, AmbiguousError, "may exist"),
        (500, {"message": "Server Error"}, AmbiguousError, "may exist.*options.event is a start"),
        (
            500,
            {
                "message": "Argument 2 passed to ProcessMaker\\Managers\\WorkflowManager::"
                "triggerStartEvent() must implement interface ProcessMaker\\Nayra\\Contracts"
                "\\Bpmn\\StartEventInterface, instance of ProcessMaker\\Nayra\\Bpmn\\Models"
                "\\ScriptTask given",
                "exception": "TypeError",
            },
            PermanentError,
            "not a start event",
        ),
        (
            500,
            {"message": "Server Error", "exception": "TypeError: ... must be of type "
             "StartEventInterface, ScriptTask given"},
            PermanentError,
            "not a start event",
        ),
    ],
)
@responses.activate
def test_error_classes(
    status: int, payload: Any, error: type[Exception], message: str
) -> None:
    responses.post(START, json=payload, status=status, headers={"Retry-After": "3"})
    with pytest.raises(error, match=message) as caught:
        engine().start(job(), KEY)
    assert type(caught.value) is error
    assert caught.value.engine_error == payload  # type: ignore[attr-defined]
    if error is TransientError:
        assert caught.value.retry_after == 3.0  # type: ignore[attr-defined]


def test_not_a_start_event_message_does_not_claim_the_instance_may_exist() -> None:
    response = requests.Response()
    response.status_code = 500
    body = {"message": "must implement interface StartEventInterface"}
    error = engine().classify(response, body)
    assert isinstance(error, PermanentError)
    assert "may exist" not in error.message


@responses.activate
def test_password_grant_refreshes_once_on_401() -> None:
    token = responses.post(TOKEN_URL, json={"access_token": "a", "token_type": "Bearer"})
    responses.post(START, json={"error": "Unauthenticated."}, status=401)
    responses.post(START, json=CREATED, status=201)
    started = engine("pm-password").start(job(target="pm-password"), KEY)
    assert started.instance_id == "345"
    assert token.call_count == 2
    form = dict(p.split("=") for p in str(responses.calls[0].request.body).split("&"))
    assert (form["grant_type"], form["username"]) == ("password", "admin")


@responses.activate
def test_refresh_that_still_gets_401_is_an_authentication_error() -> None:
    token = responses.post(TOKEN_URL, json={"access_token": "a"})
    responses.post(START, json={"error": "Unauthenticated."}, status=401)
    with pytest.raises(AuthenticationError):
        engine("pm-password").start(job(target="pm-password"), KEY)
    assert token.call_count == 2


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (requests.ConnectionError(NewConnectionError(None, "refused")), TransientError),  # type: ignore[arg-type]
        (requests.ReadTimeout(), AmbiguousError),
        (requests.ConnectionError("Connection aborted."), AmbiguousError),
    ],
)
@responses.activate
def test_transport_failures(failure: Exception, error: type[Exception]) -> None:
    responses.post(START, body=failure)
    with pytest.raises(error):
        engine().start(job(), KEY)


# ---------------------------------------------------------------- lookup


@pytest.mark.parametrize(
    ("key", "literal"),
    [("plain", '"plain"'), ('a"b', '"a\\"b"'), ("c:\\d", '"c:\\\\d"')],
)
def test_pmql_string_escapes(key: str, literal: str) -> None:
    assert pmql_string(key) == literal


@responses.activate
def test_lookup_finds_the_request_by_its_key() -> None:
    key = 'orders:"A-17"'
    responses.get(
        f"{API}/requests",
        json={"data": [{"id": 77, "data": {KEY_VARIABLE: key}}], "meta": {"total": 1}},
        match=[
            matchers.query_param_matcher(
                {
                    "type": "all",
                    "include": "data",
                    "pmql": f'data.{KEY_VARIABLE} = "orders:\\"A-17\\""',
                }
            ),
            matchers.header_matcher({"Accept": "application/json"}),
        ],
    )
    assert engine().lookup(job(), key) == "77"


@responses.activate
def test_lookup_without_match_is_none() -> None:
    responses.get(f"{API}/requests", json={"data": [], "meta": {"total": 0}})
    assert engine().lookup(job(), KEY) is None


@responses.activate
def test_lookup_with_bad_pmql_is_permanent() -> None:
    responses.get(
        f"{API}/requests", json={"message": "Your PMQL contains invalid syntax."}, status=400
    )
    with pytest.raises(PermanentError, match="PMQL"):
        engine().lookup(job(), KEY)


@responses.activate
def test_lookup_404_carries_no_start_event_hint() -> None:
    responses.get(f"{API}/requests", json={"error": "Not Found"}, status=404)
    with pytest.raises(PermanentError) as caught:
        engine().lookup(job(), KEY)
    assert "options.event" not in caught.value.message
