"""Starts by message in the adapters: request shapes, strict fields, refusals, lookups.

Mocked at the HTTP transport with `responses` (the sandbox runs them for
real in tests/test_message_starts.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from worker.engines import build_engine
from worker.engines.base import KEY_VARIABLE, Engine
from worker.engines.camunda7 import carried_business_key
from worker.errors import InvalidJob
from worker.models import Job
from worker.targets import Targets

KEY = "orders:message:order-received:A-17"
BASES = {"camunda8": "http://c8.test", "camunda7": "http://c7.test/engine-rest",
         "processmaker4": "http://pm.test/api/1.0", "blueworks": "http://bw.test",
         "tas": "http://tas.test"}


def engine(name: str, **fields: Any) -> Engine:
    raw = {"engine": name, "base_url": BASES[name], **fields}
    return build_engine(Targets.from_dict({"targets": {"t": raw}}, env={})["t"])


def job(message: dict[str, Any] | None = None, **fields: Any) -> Job:
    return Job.parse({"target": "t", "message": message or {"name": "order-received"},
                      **fields})


@pytest.mark.parametrize("name", ["processmaker4", "blueworks", "tas"])
def test_engines_without_message_starts_refuse_the_job_saying_why(name: str) -> None:
    with pytest.raises(InvalidJob) as caught:
        engine(name).request_for(job(), KEY)
    assert caught.value.message == (
        f"message: {name} cannot start a process by message (only camunda8 and camunda7 "
        "targets can); name the process instead"
    )


@pytest.mark.parametrize("name", ["camunda8", "camunda7"])
def test_a_buffered_message_is_refused(name: str) -> None:
    with pytest.raises(InvalidJob, match=r"message.ttl: .* leave ttl unset or 0"):
        engine(name).request_for(job({"name": "m", "ttl": 60000}), KEY)
    assert engine(name).request_for(job({"name": "m", "ttl": 0}), KEY).json is not None


@pytest.mark.parametrize("name", ["camunda8", "camunda7"])
def test_the_key_variable_stays_the_workers(name: str) -> None:
    with pytest.raises(InvalidJob, match=f"variables.{KEY_VARIABLE}: reserved"):
        engine(name).request_for(job(variables={KEY_VARIABLE: "mine"}), KEY)


# ---------------------------------------------------------------- Camunda 8


@pytest.mark.parametrize("version", ["8.6", "8.8", "8.9"])
def test_c8_correlates_name_key_variables_and_tenant(version: str) -> None:
    request = engine("camunda8", api_version=version).request_for(
        job({"name": "order-received", "correlation_key": "A-17"},
            variables={"orderId": "A-17"}, tenant_id="acme", business_key="A-17"), KEY)
    assert (request.method, request.path) == ("POST", "/v2/messages/correlation")
    assert request.json == {"name": "order-received", "correlationKey": "A-17",
                            "variables": {"orderId": "A-17", KEY_VARIABLE: KEY},
                            "tenantId": "acme"}


def test_c8_without_correlation_key_or_tenant_sends_neither() -> None:
    request = engine("camunda8").request_for(job(), KEY)
    assert request.json == {"name": "order-received", "variables": {KEY_VARIABLE: KEY}}


@pytest.mark.parametrize("option", ["tags", "business_id", "version_tag", "await_completion"])
def test_c8_process_start_options_do_not_apply(option: str) -> None:
    with pytest.raises(InvalidJob, match=f"options.{option}: a start by message on camunda8"):
        engine("camunda8", api_version="8.9").request_for(job(options={option: "x"}), KEY)


def test_c8_a_bad_tenant_is_refused_before_sending() -> None:
    with pytest.raises(InvalidJob, match="tenant_id: 'a b' does not match"):
        engine("camunda8").request_for(job(tenant_id="a b"), KEY)


@pytest.mark.parametrize("version", ["8.8", "8.9"])
def test_c8_a_message_start_is_looked_up_by_its_key_variable_not_a_tag(version: str) -> None:
    with responses.RequestsMock() as mock:
        mock.post("http://c8.test/v2/process-instances/search",
                  json={"items": [{"processInstanceKey": "42"}]})
        found = engine("camunda8", api_version=version).lookup(job(), KEY)
        body = json.loads(mock.calls[0].request.body or b"{}")
    assert found == "42"
    assert body == {"filter": {"variables": [{"name": KEY_VARIABLE, "value": json.dumps(KEY)}]}}


# ---------------------------------------------------------------- Camunda 7


def test_c7_without_business_key_the_key_is_the_business_key() -> None:
    request = engine("camunda7").request_for(job(variables={"n": 3}), KEY)
    assert (request.method, request.path) == ("POST", "/message")
    assert request.json == {
        "messageName": "order-received", "businessKey": carried_business_key(KEY),
        "processVariables": {"n": {"value": 3, "type": "Integer", "valueInfo": {}}},
        "resultEnabled": True,
    }


def test_c7_with_business_key_the_key_travels_as_a_variable() -> None:
    request = engine("camunda7").request_for(
        job(business_key="A-17", tenant_id="acme", variables={"since": "2026-01-02"},
            options={"variable_types": {"since": "Date"}}), KEY)
    assert request.json["businessKey"] == "A-17" and request.json["tenantId"] == "acme"
    variables = request.json["processVariables"]
    assert variables[KEY_VARIABLE] == {"value": KEY, "type": "String", "valueInfo": {}}
    assert variables["since"]["type"] == "Date"


def test_c7_refuses_a_correlation_key() -> None:
    with pytest.raises(InvalidJob, match=r"message\.correlation_key: Camunda 7 matches a start"):
        engine("camunda7").request_for(job({"name": "m", "correlation_key": "k"}), KEY)


@pytest.mark.parametrize("option", ["process_definition_id", "start_instructions",
                                    "skip_io_mappings", "case_instance_id"])
def test_c7_only_variable_types_apply(option: str) -> None:
    with pytest.raises(InvalidJob, match=rf"options.{option}: .* \(only variable_types\)"):
        engine("camunda7").request_for(job(options={option: "x"}), KEY)


def test_c7_variable_types_must_name_variables() -> None:
    with pytest.raises(InvalidJob, match=r"options\.variable_types\.amout: no such variable"):
        engine("camunda7").request_for(
            job(variables={"amount": 1}, options={"variable_types": {"amout": "Long"}}), KEY)


@pytest.mark.parametrize("business_key", [None, "A-17"])
def test_c7_a_message_start_is_looked_up_without_a_definition_scope(
    business_key: str | None,
) -> None:
    base = BASES["camunda7"]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{base}/process-instance", json=[{"id": "p-1"}])
        mock.get(f"{base}/variable-instance",  # only to confirm a user's business key
                 json=[{"processInstanceId": "p-1", "value": KEY}])
        found = engine("camunda7").lookup(job(business_key=business_key), KEY)
        assert len(mock.calls) == (1 if business_key is None else 2)
        params = mock.calls[0].request.params
    assert found == "p-1"
    assert params == {"businessKey": business_key or carried_business_key(KEY)}
