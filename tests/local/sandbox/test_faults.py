"""Fault knobs on all five engines: scripted statuses, drops, error and drop rates, latency."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from worker.local.sandbox import ENGINE_NAMES

from .helpers import EngineClient


@pytest.fixture(params=ENGINE_NAMES)
def engine(request: pytest.FixtureRequest, client: Callable[[str], EngineClient]) -> EngineClient:
    return client(request.param)


def assert_engine_error(engine: EngineClient, response: requests.Response, status: int) -> None:
    """The body is in the engine's own error format."""
    assert response.status_code == status
    body = response.json()
    if engine.name == "camunda8":
        assert response.headers["Content-Type"] == "application/problem+json"
        assert body["status"] == status and body["title"] and body["type"] == "about:blank"
    elif engine.name == "camunda7":
        assert set(body) == {"type", "message", "code"}
    elif engine.name == "processmaker4":
        assert set(body) == {"message"}
    elif engine.name == "blueworks":
        assert body["status"] == status and body["error"]
    else:
        assert body["error"]["message"] and body["error"]["code"]


def test_scripted_statuses_in_order_with_retry_after(engine: EngineClient) -> None:
    engine.app.faults.script([
        {"status": 503, "retry_after": "1"},
        {"status": 429, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"},
        {"status": 500},
    ])
    first, second, third = engine.start(), engine.start(), engine.start()
    assert_engine_error(engine, first, 503)
    assert first.headers["Retry-After"] == "1"
    assert_engine_error(engine, second, 429)
    assert second.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert_engine_error(engine, third, 500)
    assert "Retry-After" not in third.headers
    assert engine.app.count() == 0
    assert engine.start().status_code in (200, 201)
    assert engine.app.count() == 1
    assert engine.app.stats()["faults_injected"] == {"error": 3}


def test_drop_before_commit_raises_and_creates_nothing(engine: EngineClient) -> None:
    engine.app.faults.script([{"drop": "before_commit"}])
    with pytest.raises(requests.ConnectionError):
        engine.start()
    assert engine.app.count() == 0
    assert engine.start().status_code in (200, 201)


def test_drop_after_commit_raises_but_the_instance_exists(engine: EngineClient) -> None:
    engine.app.faults.script([{"drop": "after_commit"}])
    with pytest.raises(requests.ConnectionError):
        engine.start()
    assert engine.app.count() == 1
    assert engine.app.stats()["faults_injected"] == {"drop_after_commit": 1}


def test_error_rate_gives_the_engines_transient_error(engine: EngineClient) -> None:
    engine.app.faults.configure(error_rate=1.0, seed=1)
    response = engine.start()
    assert_engine_error(engine, response, 503)
    if engine.name == "camunda8":
        assert response.json()["title"] == "RESOURCE_EXHAUSTED"
    assert engine.app.count() == 0


def test_error_status_overrides_the_transient_status(engine: EngineClient) -> None:
    engine.app.faults.configure(error_rate=1.0, error_status=502)
    assert engine.start().status_code == 502


def test_drop_after_commit_rate(engine: EngineClient) -> None:
    engine.app.faults.configure(drop_after_commit_rate=1.0, seed=3)
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            engine.start()
    assert engine.app.count() == 2


def test_seeded_error_rate_is_reproducible(engine: EngineClient) -> None:
    def run() -> list[int]:
        engine.app.faults.configure(error_rate=0.5, seed=42)
        return [engine.start().status_code for _ in range(12)]

    first, second = run(), run()
    assert first == second
    assert 503 in first and any(code in (200, 201) for code in first)
    assert engine.app.count() == 2 * sum(code != 503 for code in first)


def test_latency(engine: EngineClient) -> None:
    engine.app.faults.configure(latency_ms=150)
    started = time.monotonic()
    assert engine.start().status_code in (200, 201)
    assert time.monotonic() - started >= 0.15
    assert engine.app.stats()["faults_injected"] == {"latency": 1}


def test_scripted_latency_then_success_lets_a_client_time_out(engine: EngineClient) -> None:
    engine.app.faults.script([{"latency_ms": 250}])
    with pytest.raises(requests.Timeout):
        engine.start(timeout=0.05)
    # the server finishes the slow request: the instance exists (an ambiguous outcome)
    assert engine.app.wait_for_instances(1, timeout=5)
    assert engine.app.count() == 1


def test_unauthenticated_requests_do_not_consume_scripted_faults(engine: EngineClient) -> None:
    engine.app.auth.configure(type="bearer", token="t")
    engine.app.faults.script([{"status": 503}])
    assert engine.start().status_code == 401
    assert engine.app.faults.pending() == 1
    assert engine.start(headers={"Authorization": "Bearer t"}).status_code == 503


def test_control_routes_over_http(engine: EngineClient) -> None:
    scripted = engine.control("faults", {"script": [{"status": 500}, {"drop": "before_commit"}]})
    assert scripted.status_code == 200 and scripted.json()["scripted_pending"] == 2
    assert engine.control("reset").json() == {"ok": True}
    assert engine.app.faults.pending() == 0
    configured = engine.control("faults", {"latency_ms": 1, "seed": 7})
    assert configured.json()["settings"]["latency_ms"] == 1
    assert engine.control("faults", {"bogus": 1}).status_code == 400
    assert engine.control("faults", {"script": [{"drop": "sideways"}]}).status_code == 400
    assert engine.start().status_code in (200, 201)
    instances = engine.control("instances").json()
    assert instances["count"] == 1 and instances["instances"][0]["engine"] == engine.name
    stats = engine.control("stats").json()
    assert stats["start_requests"] == 1 and stats["instances"] == 1
    assert not any("/_sandbox/" in route for route in stats["requests"])


def test_faults_apply_to_start_requests_only(client: Callable[[str], EngineClient]) -> None:
    c8, c7 = client("camunda8"), client("camunda7")
    for engine in (c8, c7):
        engine.app.faults.configure(error_rate=1.0, latency_ms=0)
    assert c8.post("/v2/process-instances/search", json={}).status_code == 200
    assert c7.get("/process-instance").status_code == 200
    assert c8.control("instances").status_code == 200


LOOKUPS = {
    "camunda8": lambda e: e.post("/v2/process-instances/search", json={}),
    "camunda7": lambda e: e.get("/process-instance"),
    "processmaker4": lambda e: e.get("/requests"),
}


@pytest.mark.parametrize("name", sorted(LOOKUPS))
def test_scripted_lookup_faults_hit_lookups_only(
        client: Callable[[str], EngineClient], name: str) -> None:
    engine = client(name)
    lookup = LOOKUPS[name]
    engine.app.faults.script([{"status": 403, "on": "lookup"}, {"status": 503},
                              {"status": 503, "retry_after": "2", "on": "lookup"}])
    assert engine.start().status_code == 503  # the start entry, skipping the lookup one
    forbidden = lookup(engine)
    assert_engine_error(engine, forbidden, 403)
    busy = lookup(engine)
    assert_engine_error(engine, busy, 503)
    assert busy.headers["Retry-After"] == "2"
    assert lookup(engine).status_code == 200
    assert engine.start().status_code in (200, 201)
    assert engine.app.stats()["lookup_requests"] == 3


def test_lookup_faults_can_drop_the_connection(client: Callable[[str], EngineClient]) -> None:
    c8 = client("camunda8")
    c8.app.faults.script([{"drop": "before_commit", "on": "lookup"}])
    with pytest.raises(requests.ConnectionError):
        c8.post("/v2/process-instances/search", json={})
    assert c8.post("/v2/process-instances/search", json={}).status_code == 200


def test_waiting_for_a_start_request_that_is_still_in_flight(
        client: Callable[[str], EngineClient]) -> None:
    c8 = client("camunda8")
    c8.app.faults.script([{"latency_ms": 1000}])
    assert not c8.app.wait_for_start_requests(1, timeout=0.01)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(c8.start)
        assert c8.app.wait_for_start_requests(1, timeout=5)
        assert c8.app.count() == 0  # seen, not created yet
        assert pending.result(timeout=10).status_code == 200
    assert c8.app.count() == 1


def test_camunda8_backpressure_status_follows_version(
        client: Callable[[str], EngineClient]) -> None:
    c8 = client("camunda8")
    c8.app.faults.configure(error_rate=1.0)
    for version, status in (("8.8", 503), ("8.9", 503), ("8.6", 429), ("8.6-alpha", 429)):
        c8.app.configure_version(version)
        response = c8.post("/v2/process-instances", json={"bpmnProcessId": "invoice"})
        assert response.status_code == status
        assert response.json()["title"] == "RESOURCE_EXHAUSTED"


def test_scripted_body_and_title_overrides(client: Callable[[str], EngineClient]) -> None:
    c8 = client("camunda8")
    c8.app.faults.script([{"status": 500, "title": "RESOURCE_EXHAUSTED", "message": "busy"},
                          {"status": 502, "body": {"proxy": "down"}}])
    first = c8.start().json()
    assert first["title"] == "RESOURCE_EXHAUSTED" and first["detail"] == "busy"
    assert c8.start().json() == {"proxy": "down"}


@pytest.mark.parametrize("spec", [
    {"status": 200}, {"drop": "later"}, {"status": 503, "drop": "after_commit"}, {},
    {"status": 503, "colour": "red"}, {"status": 503, "on": "token"},
])
def test_invalid_fault_specs_are_refused(client: Callable[[str], EngineClient],
                                         spec: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        client("tas").app.faults.script([spec])


@pytest.mark.parametrize("settings", [
    {"error_rate": 1.5}, {"drop_after_commit_rate": -0.1}, {"latency_ms": -1},
    {"error_status": 200}, {"lookup_error_rate": 1.01},
])
def test_invalid_settings_are_refused(client: Callable[[str], EngineClient],
                                      settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        client("tas").app.faults.configure(**settings)


def test_token_latency_holds_token_requests_until_lowered(
        client: Callable[[str], EngineClient]) -> None:
    c8 = client("camunda8")
    c8.app.auth.configure(type="oauth2", client_id="w", client_secret="s")
    c8.app.faults.configure(token_latency_ms=600_000)
    answers: list[requests.Response] = []
    held = threading.Thread(target=lambda: answers.append(
        c8.token(grant_type="client_credentials", client_id="w", client_secret="s")))
    held.start()
    assert c8.app.counters.wait_for_kind("token", 1, timeout=10)
    held.join(0.2)
    assert held.is_alive() and not answers  # held by the knob
    c8.app.faults.configure(token_latency_ms=0)
    held.join(10)
    assert [a.status_code for a in answers] == [200]
    bearer = {"Authorization": f"Bearer {answers[0].json()['access_token']}"}
    c8.app.faults.configure(token_latency_ms=600_000)
    assert c8.start(headers=bearer).status_code == 200  # start requests are not held


def test_a_trickled_answer_is_whole_but_slow(engine: EngineClient) -> None:
    engine.app.faults.script([{"trickle_ms": 2}])
    started = time.monotonic()
    response = engine.start(timeout=0.5)  # no single read waits long
    assert response.status_code in (200, 201)
    assert time.monotonic() - started >= 0.002 * len(response.content)
    assert response.json() and engine.app.count() == 1
    assert engine.app.stats()["faults_injected"] == {"trickle": 1}
    assert engine.start().status_code in (200, 201)  # the next answer comes at once


@pytest.mark.parametrize("spec", [{"trickle_ms": -1}, {"trickle_ms": 1.5},
                                  {"drop": "after_commit", "trickle_ms": 5}])
def test_bad_trickles_are_refused(client: Callable[[str], EngineClient],
                                  spec: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        client("camunda8").app.faults.script([spec])


@pytest.mark.parametrize("name", sorted(LOOKUPS))
def test_a_standing_lookup_error_rate_fails_lookups_only(
        client: Callable[[str], EngineClient], name: str) -> None:
    """A steady stream of failing lookups (the long fault run's): 503, 502 or no answer."""
    engine = client(name)
    engine.app.faults.configure(lookup_error_rate=1.0, seed=3)
    answers: list[int | str] = []
    for _ in range(30):
        try:
            answers.append(LOOKUPS[name](engine).status_code)
        except requests.ConnectionError:
            answers.append("dropped")
    assert set(answers) == {engine.app.transient_status, 502, "dropped"}
    assert engine.start().status_code in (200, 201)  # starts are left alone
    injected = engine.app.stats()["faults_injected"]
    assert set(injected) == {"lookup_error", "lookup_drop_before_commit"}
    assert sum(injected.values()) == 30
    engine.app.faults.configure(lookup_error_rate=0.0)
    assert LOOKUPS[name](engine).status_code == 200


def test_a_seeded_lookup_error_rate_is_reproducible(
        client: Callable[[str], EngineClient]) -> None:
    c8 = client("camunda8")

    def run() -> list[int | str]:
        c8.app.faults.configure(lookup_error_rate=0.5, seed=11)
        seen: list[int | str] = []
        for _ in range(20):
            try:
                seen.append(LOOKUPS["camunda8"](c8).status_code)
            except requests.ConnectionError:
                seen.append("dropped")
        return seen

    first = run()
    assert 200 in first and len(set(first)) > 1
    assert run() == first
