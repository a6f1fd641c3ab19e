"""TAS adapter: value checks before sending, the created-by-API marker, the id assumption."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses
from responses import matchers
from urllib3.exceptions import NewConnectionError

from worker.engines import build_engine
from worker.engines.tas import UNKNOWN_ID, Tas
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

SERVER = "http://tas.test"
TOKEN_URL = "http://tas.test/oauth/token"
START = f"{SERVER}/api/plugins/api-extensions/start-process"
KEY = "tas:1"

TARGETS = Targets.from_dict(
    {
        "targets": {
            "tas": {
                "engine": "tas",
                "base_url": SERVER,
                "auth": {"type": "bearer", "token": "${TAS_TOKEN}"},
            },
            "tas-marked": {
                "engine": "tas",
                "base_url": SERVER,
                "mark_created_by_api": True,
                "auth": {
                    "type": "oauth2",
                    "token_url": TOKEN_URL,
                    "client_id": "c",
                    "client_secret": "s",
                },
            },
        }
    },
    env={"TAS_TOKEN": "tas-token"},
)


def engine(target: str = "tas") -> Tas:
    adapter = build_engine(TARGETS[target])
    assert isinstance(adapter, Tas)
    return adapter


def job(**fields: Any) -> Job:
    return Job.parse({"target": "tas", "process": "27", **fields})


def data_of(**fields: Any) -> dict[str, Any]:
    request = engine(fields.get("target", "tas")).build_request(job(**fields), KEY)
    assert request.json["processId"] == 27
    data: dict[str, Any] = request.json["data"]
    return data


# ---------------------------------------------------------------- request


def test_request_shape() -> None:
    request = engine().build_request(job(process=27, variables={"a": "x", "n": 100}), KEY)
    assert (request.method, request.path) == ("POST", "/api/plugins/api-extensions/start-process")
    assert request.json == {"processId": 27, "data": {"a": "x", "n": 100}}


@pytest.mark.parametrize(
    ("value", "sent"),
    [("value1", "value1"), (100, 100), (12.5, 12.5), (-3, -3), ("2025-01-01", "2025-01-01")],
)
def test_documented_values_pass(value: Any, sent: Any) -> None:
    assert data_of(variables={"v": value}) == {"v": sent}


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("2026-01-02T03:04:05Z", "2026-01-02"),
        ("2026-01-02T23:30:00-05:00", "2026-01-02"),
        ("2026-01-02T00:30:00+02:00", "2026-01-02"),
        ("2026-01-02", "2026-01-02"),
    ],
)
def test_date_fields_are_cut_to_the_date_as_written(value: str, sent: str) -> None:
    assert data_of(variables={"due": value}, options={"date_fields": ["due"]}) == {"due": sent}


@pytest.mark.parametrize(
    ("variables", "options", "message"),
    [
        ({"flag": True}, {}, r"variables\.flag: .*not booleans"),
        ({"none": None}, {}, r"variables\.none: .*not null"),
        ({"obj": {"a": 1}}, {}, r"variables\.obj: .*not an object"),
        ({"list": [1]}, {}, r"variables\.list: .*not an array"),
        ({"due": "next week"}, {"date_fields": ["due"]}, r"variables\.due: .*ISO 8601"),
        ({"due": 20260102}, {"date_fields": ["due"]}, r"variables\.due: .*ISO 8601"),
        ({"due": "2026-01-02"}, {"date_fields": ["dua"]}, r"date_fields\.dua: .*'due'"),
        ({}, {"mark_created_by_apii": True}, "did you mean 'mark_created_by_api'"),
        ({}, {"mark_created_by_api": "yes"}, "options.mark_created_by_api"),
    ],
)
@responses.activate
def test_invalid_jobs_fail_before_any_http_call(
    variables: dict[str, Any], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidJob, match=message):
        engine().start(job(variables=variables, options=options), KEY)
    assert len(responses.calls) == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"process": "order-process"}, "positive integers"),
        ({"process": "27.5"}, "positive integers"),
        ({"process": "0"}, "positive integers"),
        ({"process": str(2**63)}, "positive integers"),
        ({"process": "²"}, "positive integers"),
        ({"version": 1}, "version"),
        ({"tenant_id": "t"}, "tenant_id"),
    ],
)
def test_invalid_process_and_fields(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJob, match=message):
        data_of(**fields)


def test_created_by_api_marker_from_target_or_job() -> None:
    assert "_isCaseCreatedByAPI" not in data_of()
    assert data_of(options={"mark_created_by_api": True}) == {"_isCaseCreatedByAPI": "true"}
    marked = data_of(target="tas-marked", variables={"a": "x"})
    assert marked == {"a": "x", "_isCaseCreatedByAPI": "true"}


# ---------------------------------------------------------------- instance id


@pytest.mark.parametrize(
    ("payload", "instance_id"),
    [
        ({"id": 5001}, "5001"),
        ({"iprocId": "IP-9"}, "IP-9"),
        ({"caseId": 7, "id": 8}, "8"),
        ({"data": {"processInstanceId": 42}}, "42"),
        ({"result": {"instanceId": "inst-3"}}, "inst-3"),
        ({"ok": True, "result": {"iprocId": 11}}, "11"),
        ({"id": None, "data": {"caseId": 3}}, "3"),
        ({"id": True}, UNKNOWN_ID),
        ({"ok": True}, UNKNOWN_ID),
        ({"data": "created"}, UNKNOWN_ID),
        ([1, 2], UNKNOWN_ID),
        ("Case created", UNKNOWN_ID),
        (None, UNKNOWN_ID),
    ],
)
@responses.activate
def test_any_2xx_is_a_success(payload: Any, instance_id: str) -> None:
    if isinstance(payload, str):
        responses.post(START, body=payload, status=200)
    elif payload is None:
        responses.post(START, status=204)
    else:
        responses.post(START, json=payload, status=201)
    started = engine().start(job(variables={"a": "x"}), KEY)
    assert started.instance_id == instance_id
    assert started.body == payload


@responses.activate
def test_bearer_token_and_json_body_are_sent() -> None:
    responses.post(
        START,
        json={"id": 1},
        match=[
            matchers.header_matcher({"Authorization": "Bearer tas-token"}),
            matchers.json_params_matcher({"processId": 27, "data": {"a": "x"}}),
        ],
    )
    assert engine().start(job(variables={"a": "x"}), KEY).instance_id == "1"


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "payload", "error"),
    [
        (400, {"message": "Variable 'x' does not exist on template"}, PermanentError),
        (404, {"error": "processId not found"}, PermanentError),
        (409, None, PermanentError),
        (422, {"message": "LOV value not allowed"}, PermanentError),
        (403, "Forbidden", PermanentError),
        (401, None, AuthenticationError),
        (429, None, Backpressure),
        (503, None, Backpressure),
        (500, {"error": "Internal"}, AmbiguousError),
        (502, None, AmbiguousError),
        (504, "<html>gateway</html>", AmbiguousError),
    ],
)
@responses.activate
def test_error_classes(status: int, payload: Any, error: type[Exception]) -> None:
    if isinstance(payload, str):
        responses.post(START, body=payload, status=status, headers={"Retry-After": "2"})
    else:
        responses.post(START, json=payload, status=status, headers={"Retry-After": "2"})
    with pytest.raises(error) as caught:
        engine().start(job(), KEY)
    assert type(caught.value) is error
    assert caught.value.engine_error == payload  # type: ignore[attr-defined]


@responses.activate
def test_oauth2_refresh_on_401() -> None:
    token = responses.post(TOKEN_URL, json={"access_token": "t"})
    responses.post(START, status=401)
    responses.post(START, json={"id": 9})
    started = engine("tas-marked").start(job(target="tas-marked"), KEY)
    assert started.instance_id == "9"
    assert token.call_count == 2
    assert json.loads(responses.calls[-1].request.body or b"{}")["data"] == {
        "_isCaseCreatedByAPI": "true"
    }


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (requests.ConnectionError(NewConnectionError(None, "refused")), TransientError),  # type: ignore[arg-type]
        (requests.ConnectTimeout(), TransientError),
        (requests.ReadTimeout(), AmbiguousError),
    ],
)
@responses.activate
def test_transport_failures(failure: Exception, error: type[Exception]) -> None:
    responses.post(START, body=failure)
    with pytest.raises(error):
        engine().start(job(), KEY)


def test_no_lookup() -> None:
    assert Tas.supports_lookup is False
