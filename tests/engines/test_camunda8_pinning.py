"""Camunda 8: starts pinned by ``options.version_tag``, and ``options.on_duplicate`` on 8.9.

Mocked at the HTTP transport with `responses`; the sandbox runs both for real
in tests/test_version_tags.py and tests/test_business_id.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from tests.support.camunda8 import BASE, engine, job
from worker.engines.camunda8 import key_tag
from worker.errors import ConflictError, InvalidJob, PermanentError
from worker.models import Job

CREATE = f"{BASE}/v2/process-instances"
DEFINITIONS = f"{BASE}/v2/process-definitions/search"
INSTANCES = f"{BASE}/v2/process-instances/search"
KEY = "orders:A-17"
TAGGED = {"items": [{"processDefinitionKey": "2251799813686749", "version": 3,
                     "versionTag": "2.0"}]}


def pinned(**fields: Any) -> Job:
    return job(options={"version_tag": "2.0", **fields.pop("options", {})}, **fields)


# ---------------------------------------------------------------- version_tag


def test_a_pinned_request_is_completed_only_right_before_sending() -> None:
    request = engine().build_request(pinned(tenant_id="acme"), KEY)
    assert request.deferred and request.context["version_tag"] == "2.0"
    assert request.json["processDefinitionId"] == "order-process"  # not looked up yet


@pytest.mark.parametrize("version", ["8.8", "8.9"])
def test_the_start_goes_by_the_key_the_tag_names(version: str) -> None:
    with responses.RequestsMock() as mock:
        mock.post(DEFINITIONS, json=TAGGED)
        mock.post(CREATE, json={"processInstanceKey": "7"})
        started = engine(version).start(pinned(tenant_id="acme", variables={"a": 1}), KEY)
        search, create = (json.loads(c.request.body or b"{}") for c in mock.calls)
    assert started.instance_id == "7"
    assert search == {"filter": {"processDefinitionId": {"$eq": "order-process"},
                                 "versionTag": "2.0", "tenantId": "acme"},
                      "sort": [{"field": "version", "order": "DESC"}]}
    assert create["processDefinitionKey"] == "2251799813686749"
    assert "processDefinitionId" not in create and "processDefinitionVersion" not in create
    assert create["variables"] == {"a": 1} and create["tenantId"] == "acme"
    assert create["tags"] == [key_tag(KEY)]


def test_the_key_is_looked_up_once_then_cached() -> None:
    adapter = engine()
    with responses.RequestsMock() as mock:
        mock.post(DEFINITIONS, json=TAGGED)
        mock.post(CREATE, json={"processInstanceKey": "7"})
        for n in range(3):
            adapter.start(pinned(), f"{KEY}:{n}")
        assert [c.request.url for c in mock.calls].count(DEFINITIONS) == 1
        adapter.start(pinned(tenant_id="acme"), KEY)  # another tenant, another pin
        assert [c.request.url for c in mock.calls].count(DEFINITIONS) == 2


def test_a_404_by_a_cached_key_forgets_it() -> None:
    adapter = engine()
    gone = {"type": "about:blank", "title": "NOT_FOUND", "status": 404, "detail": "no key"}
    with responses.RequestsMock() as mock:
        mock.post(DEFINITIONS, json=TAGGED)
        mock.post(CREATE, json={"processInstanceKey": "7"})
        adapter.start(pinned(), KEY)
        mock.replace(responses.POST, CREATE, json=gone, status=404)
        with pytest.raises(PermanentError):
            adapter.start(pinned(), KEY)
        mock.replace(responses.POST, CREATE, json={"processInstanceKey": "8"})
        assert adapter.start(pinned(), KEY).instance_id == "8"
        assert [c.request.url for c in mock.calls].count(DEFINITIONS) == 2


def test_a_tag_nothing_carries_fails_permanent_without_a_start() -> None:
    with responses.RequestsMock() as mock:
        mock.post(DEFINITIONS, json={"items": []})
        with pytest.raises(PermanentError) as caught:
            engine().start(pinned(), KEY)
        assert len(mock.calls) == 1
    assert caught.value.message.startswith(
        "camunda8: no process definition 'order-process' has version tag '2.0'")


@pytest.mark.parametrize("answer", [{"items": [{"version": 3}]}, {"nope": []}, [1]])
def test_a_search_answer_without_a_key_is_permanent(answer: Any) -> None:
    with responses.RequestsMock() as mock:
        mock.post(DEFINITIONS, json=answer)
        with pytest.raises(PermanentError, match="process definition search answered without"):
            engine().start(pinned(), KEY)


@pytest.mark.parametrize("version", ["8.6", "8.6-alpha"])
def test_version_tags_need_88(version: str) -> None:
    with pytest.raises(InvalidJob, match=r"options\.version_tag: needs api_version 8\.8"):
        engine(version).build_request(pinned(), KEY)


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"version": 2}, "version"),
     ({"options": {"process_definition_key": "1"}}, "options.process_definition_key")],
)
def test_a_definition_is_pinned_one_way_only(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidJob, match=f"{field}: a job pins its definition by version_tag"):
        engine().build_request(pinned(**fields), KEY)


@pytest.mark.parametrize("tag", ["", 2, "x" * 257])
def test_bad_version_tags_are_invalid(tag: Any) -> None:
    with pytest.raises(InvalidJob, match=r"options\.version_tag"):
        engine().build_request(job(options={"version_tag": tag}), KEY)


# ---------------------------------------------------------------- on_duplicate (8.9)

CONFLICT = {"type": "about:blank", "title": "ALREADY_EXISTS", "status": 409,
            "detail": "business id in use", "instance": "/v2/process-instances"}
HOLDER = {"items": [{"processInstanceKey": "2251799813685251", "tags": ["other"]}]}


def test_return_existing_makes_another_apps_holder_a_duplicate() -> None:
    with responses.RequestsMock() as mock:
        mock.post(CREATE, json=CONFLICT, status=409)
        mock.post(INSTANCES, json=HOLDER)
        mock.post(INSTANCES, json={"items": []})  # ours is nowhere
        started = engine("8.9").start(
            job(business_key="A-17", options={"on_duplicate": "return_existing"}), KEY)
    assert (started.instance_id, started.existing) == ("2251799813685251", True)


def test_reject_is_the_default_and_names_the_holder() -> None:
    for options in ({}, {"on_duplicate": "reject"}):
        with responses.RequestsMock() as mock:
            mock.post(CREATE, json=CONFLICT, status=409)
            mock.post(INSTANCES, json=HOLDER)
            mock.post(INSTANCES, json={"items": []})
            with pytest.raises(ConflictError) as caught:
                engine("8.9").start(job(business_key="A-17", options=options), KEY)
        assert caught.value.existing_instance_id == "2251799813685251"


def test_return_existing_still_prefers_our_own_lost_attempt() -> None:
    with responses.RequestsMock() as mock:
        mock.post(CREATE, json=CONFLICT, status=409)
        mock.post(INSTANCES, json={"items": [{"processInstanceKey": "5",
                                              "tags": [key_tag(KEY)]}]})
        started = engine("8.9").start(
            job(business_key="A-17", options={"on_duplicate": "return_existing"}), KEY)
    assert (started.instance_id, started.existing) == ("5", False)


@pytest.mark.parametrize("version", ["8.6", "8.8"])
def test_on_duplicate_needs_89(version: str) -> None:
    with pytest.raises(InvalidJob, match=r"options\.on_duplicate: needs api_version 8\.9"):
        engine(version).build_request(job(options={"on_duplicate": "return_existing"}), KEY)


def test_unknown_on_duplicate_is_invalid() -> None:
    with pytest.raises(InvalidJob, match=r"options\.on_duplicate"):
        engine("8.9").build_request(job(options={"on_duplicate": "ignore"}), KEY)
