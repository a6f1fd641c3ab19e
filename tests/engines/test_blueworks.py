"""Blueworks Live adapter: the form-encoded instance, the subject template, errors."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses
from responses import matchers
from urllib3.exceptions import NewConnectionError

from worker.engines import build_engine
from worker.engines.blueworks import Blueworks
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

SERVER = "http://bw.test"
TOKEN_URL = f"{SERVER}/oauth/token"
LAUNCH = f"{SERVER}/scr/api/LaunchInstance"
KEY = "bw:1"

TARGETS = Targets.from_dict(
    {
        "targets": {
            "bw": {
                "engine": "blueworks",
                "base_url": SERVER,
                "on_behalf_of": "svc@example.com",
                "auth": {
                    "type": "oauth2",
                    "token_url": TOKEN_URL,
                    "client_id": "id",
                    "client_secret": "secret",
                },
            },
            "bw-user": {"engine": "blueworks", "base_url": SERVER},
        }
    },
    env={},
)
TASKS = [
    {"name": "Approve", "id": "5f501e134ae2f", "assignedTo": "7f0002", "approvalStep": True},
    {"name": "Ship", "assignedTo": "7f0003", "dueDateExpression": "2026/12/01"},
]
BAD_DUE = {"name": "x", "assignedTo": "u", "dueDateExpression": "2026-12-01"}
WORK = {"work": {"id": "5f501e134ae25", "status": "Active"}, "version": "20110917"}


def engine(target: str = "bw") -> Blueworks:
    adapter = build_engine(TARGETS[target])
    assert isinstance(adapter, Blueworks)
    return adapter


def job(**fields: Any) -> Job:
    base: dict[str, Any] = {"target": "bw", "process": "5f500e12a00ee", "business_key": "A-17"}
    return Job.parse({**base, **fields})


def app_of(target: str = "bw", **fields: Any) -> dict[str, Any]:
    request = engine(target).build_request(job(**fields), KEY)
    assert request.form is not None and request.json is None
    instance: dict[str, Any] = json.loads(request.form["instance"])
    assert set(instance) == {"app"}
    app: dict[str, Any] = instance["app"]
    return app


# ---------------------------------------------------------------- request


def test_minimal_request() -> None:
    request = engine().build_request(job(), KEY)
    assert (request.method, request.path) == ("POST", "/scr/api/LaunchInstance")
    assert request.params == {"version": "20110917"}
    assert request.headers == {"Accept": "application/json", "X-On-Behalf-Of": "svc@example.com"}
    assert app_of() == {"id": "5f500e12a00ee", "subject": "A-17", "attachments": []}


def test_every_option() -> None:
    options = {
        "subject": "Order {order} for {amount:.2f} EUR",
        "details": "from the shop",
        "tasks": TASKS,
        "attachments": [{"id": "att-1"}],
        "mail_on_completion": False,
        "time_zone_id": "Europe/Prague",
    }
    app = app_of(variables={"order": "A-17", "amount": 12.5}, options=options)
    assert app == {
        "id": "5f500e12a00ee",
        "subject": "Order A-17 for 12.50 EUR",
        "details": "from the shop",
        "mailOnCompletion": False,
        "tasks": TASKS,
        "attachments": [{"id": "att-1"}],
        "timeZoneId": "Europe/Prague",
    }


def test_job_overrides_the_on_behalf_of_user() -> None:
    request = engine().build_request(job(options={"on_behalf_of": "jane@example.com"}), KEY)
    assert request.headers["X-On-Behalf-Of"] == "jane@example.com"


def test_user_service_id_sends_no_on_behalf_of() -> None:
    request = engine("bw-user").build_request(job(target="bw-user"), KEY)
    assert "X-On-Behalf-Of" not in request.headers


@pytest.mark.parametrize(
    ("template", "variables", "subject"),
    [
        ("Plain subject", {}, "Plain subject"),
        ("{a}-{b}", {"a": "x", "b": 3}, "x-3"),
        ("{flag} {none} {items}", {"flag": True, "none": None, "items": [1]}, "true null [1]"),
        ("{{literal}} {a!r}", {"a": "x"}, "{literal} 'x'"),
        ("{n:>5}", {"n": 42}, "   42"),
    ],
)
def test_subject_templates(template: str, variables: dict[str, Any], subject: str) -> None:
    assert app_of(variables=variables, options={"subject": template})["subject"] == subject


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{missing}", r"\{missing\} is not a variable of the job"),
        ("{orderr}", "did you mean 'order'"),
        ("{order.__class__}", "not allowed"),
        ("{order[0]}", "not allowed"),
        ("{0}", "not allowed"),
        ("{}", "not allowed"),
        ("{order:{width}}", "not allowed"),
        ("{order:99999999}", "not allowed"),
        ("{order", "options.subject"),
        ("{order:d}", "options.subject"),
        ("{blank}", "empty subject"),
    ],
)
def test_bad_subject_templates(template: str, message: str) -> None:
    with pytest.raises(InvalidJob, match=message):
        app_of(variables={"order": "A-17", "blank": " "}, options={"subject": template})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"business_key": None}, "options.subject: required"),
        ({"options": {"subject": ""}}, "options.subject"),
        ({"options": {"tasks": [{"name": "x"}]}}, "assignedTo"),
        ({"options": {"tasks": [BAD_DUE]}}, "dueDateExpression"),
        ({"options": {"attachments": [{}]}}, "attachments"),
        ({"options": {"mailOnCompletion": True}}, "did you mean 'mail_on_completion'"),
        ({"version": 2}, "version"),
        ({"tenant_id": "t"}, "tenant_id"),
    ],
)
def test_invalid_jobs(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidJob, match=message):
        app_of(**fields)


# ---------------------------------------------------------------- start over HTTP


@responses.activate
def test_launch_is_form_encoded_and_returns_work_id() -> None:
    responses.post(TOKEN_URL, json={"access_token": "tok", "expires_in": 3600})
    responses.post(
        LAUNCH,
        json=WORK,
        match=[
            matchers.query_param_matcher({"version": "20110917"}),
            matchers.header_matcher(
                {"Authorization": "Bearer tok", "X-On-Behalf-Of": "svc@example.com"}
            ),
        ],
    )
    started = engine().start(job(), KEY)
    assert started.instance_id == "5f501e134ae25"
    sent = responses.calls[1].request
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(str(sent.body))
    assert json.loads(form["instance"][0])["app"]["subject"] == "A-17"


@responses.activate
def test_401_refreshes_the_token_once() -> None:
    token = responses.post(TOKEN_URL, json={"access_token": "tok"})
    responses.post(LAUNCH, status=401, json={"error": "invalid_token"})
    responses.post(LAUNCH, json=WORK)
    assert engine().start(job(), KEY).instance_id == "5f501e134ae25"
    assert token.call_count == 2


@pytest.mark.parametrize(
    ("status", "payload", "error"),
    [
        (400, {"message": "Required parameters were missing"}, PermanentError),
        (401, {"error": "not authorized"}, AuthenticationError),
        (403, None, PermanentError),
        (404, None, PermanentError),
        (429, None, Backpressure),
        (500, None, AmbiguousError),
        (502, None, AmbiguousError),
        (503, None, Backpressure),
        (504, None, AmbiguousError),
    ],
)
@responses.activate
def test_error_classes(status: int, payload: Any, error: type[Exception]) -> None:
    responses.post(TOKEN_URL, json={"access_token": "tok"})
    responses.post(LAUNCH, status=status, json=payload, headers={"Retry-After": "30"})
    with pytest.raises(error) as caught:
        engine().start(job(), KEY)
    assert type(caught.value) is error
    assert caught.value.http_status == status  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (requests.ConnectionError(NewConnectionError(None, "refused")), TransientError),  # type: ignore[arg-type]
        (requests.ReadTimeout(), AmbiguousError),
    ],
)
@responses.activate
def test_transport_failures(failure: Exception, error: type[Exception]) -> None:
    responses.post(LAUNCH, body=failure)
    with pytest.raises(error):
        engine("bw-user").start(job(target="bw-user"), KEY)


@pytest.mark.parametrize("payload", [{"work": {}}, {"app": {"id": "x"}}, {"work": {"id": 5}}])
@responses.activate
def test_success_without_work_id_is_ambiguous(payload: Any) -> None:
    responses.post(LAUNCH, json=payload)
    with pytest.raises(AmbiguousError):
        engine("bw-user").start(job(target="bw-user"), KEY)


def test_no_lookup() -> None:
    assert Blueworks.supports_lookup is False
    with pytest.raises(NotImplementedError):
        engine().lookup(job(), KEY)


@pytest.mark.parametrize("user", ["svc\r\nX-Evil: 1", "svc\n", " svc"])
def test_a_header_value_http_cannot_carry_is_invalid_before_sending(user: str) -> None:
    """Also when the value comes from the target, which no job option model checks."""
    targets = Targets.from_dict(
        {"targets": {"bw": {"engine": "blueworks", "base_url": SERVER, "on_behalf_of": user}}},
        env={},
    )
    adapter = build_engine(targets["bw"])
    with pytest.raises(InvalidJob, match="header X-On-Behalf-Of"):
        adapter.start_request(job(business_key="S-1"), KEY)


@pytest.mark.parametrize("user", ["jane\r\nX-Evil: 1", "jane\n", " jane"])
def test_an_on_behalf_of_option_http_cannot_carry_is_invalid(user: str) -> None:
    with pytest.raises(InvalidJob, match=r"options\.on_behalf_of"):
        engine().build_request(job(business_key="S-1", options={"on_behalf_of": user}), KEY)
