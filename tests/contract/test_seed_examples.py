"""Blueworks Live and TAS publish no machine-readable spec: their seed pages are the contract.

Seed 003 (Blueworks LaunchInstance) gives two curl calls and an example
answer; seed 000 (TAS start-process) gives the endpoint, a request body and
the value types. The adapters must reproduce the requests and read the answer.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from tests.support.vendored import SEEDS
from worker.engines import build_engine
from worker.errors import AuthenticationError, PermanentError
from worker.models import Job
from worker.targets import Targets

SERVER = "http://seed.test"
CURL = re.compile(
    r"curl -i -X (?P<method>[A-Z]+) '(?P<url>[^']+)' --data-urlencode "
    r"'(?P<field>\w+)=(?P<value>\{.*?\})'(?P<headers>(?: --header '[^']+')*)"
)
TARGETS = Targets.from_dict(
    {
        "targets": {
            "bw": {
                "engine": "blueworks",
                "base_url": SERVER,
                "auth": {"type": "bearer", "token": "access_token"},
            },
            "tas": {
                "engine": "tas",
                "base_url": SERVER,
                "auth": {"type": "bearer", "token": "xxxxxx"},
            },
        }
    },
    env={},
)


def seed(prefix: str) -> str:
    found = sorted(SEEDS.glob(f"{prefix}_*.txt"))
    if not found:
        pytest.fail(f"seed document {prefix}_*.txt is missing from {SEEDS}")
    return found[0].read_text(encoding="utf-8")


def first_json(text: str, start: str) -> Any:
    """The JSON value that begins at the first ``start`` in ``text``."""
    index = text.index(start)
    value, _end = json.JSONDecoder().raw_decode(text[index:])
    return value


# ---------------------------------------------------------------- Blueworks (seed 003)


def seed_calls() -> list[dict[str, Any]]:
    calls = []
    for match in CURL.finditer(seed("003")):
        headers = dict(
            (name.strip(), value.strip())
            for name, value in (
                h.split(":", 1) for h in re.findall(r"--header '([^']+)'", match["headers"])
            )
        )
        url = urlsplit(match["url"])
        calls.append(
            {
                "method": match["method"],
                "path": url.path,
                "query": {k: v[0] for k, v in parse_qs(url.query).items()},
                "form": {match["field"]: json.loads(match["value"])},
                "headers": headers,
            }
        )
    assert len(calls) == 2, "seed 003 shows one call per credential type"
    return calls


def job_for(call: dict[str, Any]) -> Job:
    """The start job a user writes to get the seed's call."""
    app = call["form"]["instance"]["app"]
    options: dict[str, Any] = {
        "subject": app["subject"],
        "details": app["details"],
        "mail_on_completion": app["mailOnCompletion"],
        "tasks": app["tasks"],
        "attachments": app["attachments"],
    }
    if "X-On-Behalf-Of" in call["headers"]:
        options["on_behalf_of"] = call["headers"]["X-On-Behalf-Of"]
    return Job.parse({"target": "bw", "process": app["id"], "options": options})


@pytest.mark.parametrize("index", [0, 1], ids=["user-service-id", "service-id"])
def test_blueworks_reproduces_the_seed_calls(index: int) -> None:
    call = seed_calls()[index]
    request = build_engine(TARGETS["bw"]).build_request(job_for(call), "seed:1")
    assert (request.method, request.path, request.params) == (
        call["method"],
        call["path"],
        call["query"],
    )
    assert request.form is not None and request.json is None
    assert {name: json.loads(value) for name, value in request.form.items()} == call["form"]
    expected_headers = {k: v for k, v in call["headers"].items() if k != "Authorization"}
    assert request.headers == expected_headers


@responses.activate
def test_blueworks_sends_the_seed_call_over_http() -> None:
    call = seed_calls()[1]
    output = first_json(seed("003"), '{ "work"')
    responses.post(SERVER + call["path"], json=output)
    started = build_engine(TARGETS["bw"]).start(job_for(call), "seed:1")
    assert started.instance_id == "5f501e134ae25" == output["work"]["id"]
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == call["headers"]["Authorization"]
    assert sent.headers["X-On-Behalf-Of"] == "user_name@domain.com"
    assert parse_qs(urlsplit(str(sent.url)).query) == {"version": ["20110917"]}
    assert {k: json.loads(v[0]) for k, v in parse_qs(str(sent.body)).items()} == call["form"]


def test_blueworks_seed_answers_are_classified() -> None:
    text = seed("003")
    section = text[text.index("Response messages") :]
    statuses = {int(code) for code in re.findall(r"(?:^|Reason )(\d{3}) ", section, re.MULTILINE)}
    assert statuses == {200, 400, 401}
    expected = {400: PermanentError, 401: AuthenticationError}
    for status, error in expected.items():
        with responses.RequestsMock() as mock:
            mock.post(f"{SERVER}/scr/api/LaunchInstance", status=status, json={"status": status})
            with pytest.raises(error):
                build_engine(TARGETS["bw"]).start(job_for(seed_calls()[0]), "seed:1")


# ---------------------------------------------------------------- TAS (seed 000)


def tas_seed_request() -> dict[str, Any]:
    text = seed("000")
    block = text[text.index("Request body") : text.index("\nField\n")]
    without_comments = re.sub(r"//[^\n]*", "", block)
    body: dict[str, Any] = first_json(without_comments, "{")
    return body


def test_tas_reproduces_the_seed_request() -> None:
    text = seed("000")
    method = re.search(r"Method: (\w+)", text)
    url = re.search(r"URL: (\S+)", text)
    assert method and url
    body = tas_seed_request()
    job = Job.parse({"target": "tas", "process": body["processId"], "variables": body["data"]})
    request = build_engine(TARGETS["tas"]).build_request(job, "seed:1")
    assert (request.method, request.path) == (method[1], url[1])
    assert request.json == body == {
        "processId": 27,
        "data": {"processVariable1": "value1", "processVariable2": "value2"},
    }


def test_tas_accepts_the_seed_value_types_unchanged() -> None:
    text = seed("000")
    table = text[text.index("Supported value types") : text.index("The field must exist")]
    examples = {"String": "value1", "Number": 100, "Date": "2025-01-01"}
    for kind, value in examples.items():
        assert kind in table and json.dumps(value) in table
    job = Job.parse({"target": "tas", "process": "27", "variables": examples})
    request = build_engine(TARGETS["tas"]).build_request(job, "seed:1")
    assert request.json["data"] == examples


def test_tas_created_by_api_marker_is_the_seed_recommendation() -> None:
    marker = re.search(r'Example: "(\w+)": "(\w+)"', seed("000"))
    assert marker is not None
    job = Job.parse({"target": "tas", "process": "27", "options": {"mark_created_by_api": True}})
    request = build_engine(TARGETS["tas"]).build_request(job, "seed:1")
    assert request.json["data"] == {marker[1]: marker[2]}


@responses.activate
def test_tas_sends_bearer_json_and_fails_atomic_errors_permanently() -> None:
    body = tas_seed_request()
    job = Job.parse({"target": "tas", "process": "27", "variables": body["data"]})
    responses.post(f"{SERVER}/api/plugins/api-extensions/start-process", status=400, body="LOV")
    with pytest.raises(PermanentError):
        build_engine(TARGETS["tas"]).start(job, "seed:1")
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == "Bearer xxxxxx"
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.body or b"{}") == body
