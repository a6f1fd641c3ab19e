"""POST /jobs and GET /jobs over real HTTP, with a real worker and the sandboxes behind them."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
import redis

from tests.support.cli import startproc
from worker.intake.problems import PROBLEM_TYPE

from .helpers import OTHER_TOKEN, Pipeline, RunningServer

pytestmark = pytest.mark.integration


def order(key: str, **extra: Any) -> dict[str, Any]:
    return {
        "target": "orders",
        "process": "order-process",
        "variables": {"orderId": key, "amount": 12.5},
        "business_key": key,
        **extra,
    }


def test_post_one_job_then_read_its_result(http: httpx.Client, live: Pipeline) -> None:
    response = http.post("/jobs", json=order("A-17"))
    assert response.status_code == 202, response.text
    (job_id,) = response.json()["job_ids"]
    assert response.headers["location"] == f"/jobs/{job_id}"

    live.wait(job_id)
    result = http.get(response.headers["location"])
    assert result.status_code == 200
    body = result.json()
    assert body["status"] == "created"
    assert body["target"] == "orders" and body["engine"] == "camunda8"
    instances = live.sandbox.app("camunda8").instances
    assert [str(i["id"]) for i in instances] == [body["instance_id"]]


def test_post_a_list_returns_ids_in_order(http: httpx.Client, live: Pipeline) -> None:
    jobs = [order(f"L-{n}", job_id=f"list-{n}") for n in range(3)]
    response = http.post("/jobs", json=jobs)
    assert response.status_code == 202, response.text
    assert response.json() == {"job_ids": ["list-0", "list-1", "list-2"]}
    assert response.headers["location"] == "/jobs/list-0"
    results = [live.wait(f"list-{n}") for n in range(3)]
    assert {r.status for r in results} == {"created"}
    assert live.sandbox.app("camunda8").count() == 3


def test_an_unknown_job_is_404_and_a_queued_one_pending(http: httpx.Client, live: Pipeline) -> None:
    unknown = http.get("/jobs/never-sent-1")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == PROBLEM_TYPE
    assert unknown.json()["detail"] == (
        "no job 'never-sent-1': never enqueued through startproc, or its result expired"
    )
    # enqueued by the CLI on a queue no worker reads: known, no result yet
    env = {**live.env, "STARTPROC_JOBS_QUEUE": "nobody-reads-this"}
    sent = startproc("enqueue", "-t", "orders", "-p", "order-process", "--json", env=env)
    assert sent.returncode == 0, sent.stderr
    job_id = json.loads(sent.stdout)["job_id"]
    pending = http.get(f"/jobs/{job_id}")
    assert pending.status_code == 202
    assert pending.json() == {"job_id": job_id, "status": "pending"}


def test_an_unknown_target_is_422_naming_the_field(
    http: httpx.Client, redis_client: redis.Redis
) -> None:
    response = http.post("/jobs", json=[order("T-1"), {**order("T-2"), "target": "ordres"}])
    assert response.status_code == 422
    problem = response.json()
    assert problem["detail"] == "1 of 2 jobs are invalid; none was enqueued"
    assert problem["errors"] == [
        {
            "index": 1,
            "field": "target",
            "message": "unknown target 'ordres' (did you mean 'orders'?)",
        }
    ]
    assert redis_client.llen("startproc.jobs") == 0
    assert redis_client.hlen("startproc:inflight") == 0


def test_a_list_with_one_invalid_job_publishes_none(
    http: httpx.Client, live: Pipeline, redis_client: redis.Redis
) -> None:
    good = order("G-1", job_id="good-in-bad-list")
    bad = {"target": "orders", "process": "p", "version": 0, "bussiness_key": "x"}
    response = http.post("/jobs", json=[good, bad])

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_TYPE
    problem = response.json()
    assert problem["status"] == 422 and problem["instance"] == "/jobs"
    assert "none was enqueued" in problem["detail"]
    by_field = {e["field"]: e for e in problem["errors"]}
    assert set(by_field) == {"version", "bussiness_key"}
    assert all(e["index"] == 1 for e in problem["errors"])
    assert "did you mean 'business_key'" in by_field["bussiness_key"]["message"]
    assert redis_client.llen("startproc.jobs") == 0

    # A job sent afterwards is decided; the good job of the rejected list never was.
    sentinel = http.post("/jobs", json=order("S-1")).json()["job_ids"][0]
    live.wait(sentinel)
    assert live.sandbox.app("camunda8").count() == 1
    assert http.get("/jobs/good-in-bad-list").status_code == 404, "it was never enqueued"
    assert not redis_client.keys("startproc:deliveries:good-in-bad-list:*")


def test_lookup_by_idempotency_key(http: httpx.Client, live: Pipeline) -> None:
    job_id = http.post("/jobs", json=order("K-1", idempotency_key="shop:K-1")).json()["job_ids"][0]
    live.wait(job_id)

    exact = http.get("/jobs", params={"idempotency_key": "shop:K-1", "target": "orders"})
    anywhere = http.get("/jobs", params={"idempotency_key": "shop:K-1"})
    assert exact.status_code == anywhere.status_code == 200
    assert exact.json()["job_id"] == anywhere.json()["job_id"] == job_id

    derived = http.get("/jobs", params={"idempotency_key": "orders:order-process:K-1"})
    assert derived.status_code == 202  # the explicit key replaced the derived one

    glob = http.get("/jobs", params={"idempotency_key": "shop:*"})
    assert glob.status_code == 202, "a key is matched literally, never as a pattern"
    assert glob.json() == {"idempotency_key": "shop:*", "target": None, "status": "pending"}


def test_same_key_twice_is_a_duplicate(http: httpx.Client, live: Pipeline) -> None:
    first, second = http.post("/jobs", json=[order("D-1"), order("D-1")]).json()["job_ids"]
    statuses = sorted(live.wait(j).status for j in (first, second))
    assert statuses == ["created", "duplicate"]
    assert live.sandbox.app("camunda8").count() == 1


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "send 'Authorization: Bearer"),
        ({"Authorization": "Bearer wrong-token"}, "not valid"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "send 'Authorization: Bearer"),
    ],
)
def test_jobs_need_a_valid_token(
    intake: RunningServer,
    live: Pipeline,
    redis_client: redis.Redis,
    headers: dict[str, str],
    reason: str,
) -> None:
    with intake.client(**headers) as client:
        posted = client.post("/jobs", json=order("X-1"))
        read = client.get("/jobs/some-id")
    for response in (posted, read):
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM_TYPE
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert reason in response.json()["detail"]
    assert redis_client.llen("startproc.jobs") == 0


def test_every_configured_token_is_accepted(intake: RunningServer, live: Pipeline) -> None:
    with intake.client(Authorization=f"Bearer {OTHER_TOKEN}") as client:
        assert client.get("/jobs/some-id").status_code == 404  # let in; no such job


def test_health_metrics_and_openapi_need_no_token(intake: RunningServer, live: Pipeline) -> None:
    with intake.client() as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {
            "status": "ok",
            "checks": {"redis": {"ok": True}, "broker": {"ok": True}},
        }
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "startproc_redis_up 1.0" in metrics.text
        assert client.get("/openapi.json").json()["info"]["title"].endswith("intake")


def test_body_over_the_limit_is_413(http: httpx.Client, redis_client: redis.Redis) -> None:
    big = order("B-1", variables={"blob": "x" * (1024 * 1024 + 10)})
    response = http.post("/jobs", json=big)
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_TYPE
    assert response.json()["limit_bytes"] == 1024 * 1024


def test_chunked_body_over_the_limit_is_413(http: httpx.Client) -> None:
    def chunks() -> Any:
        yield b'{"target": "orders", "process": "p", "variables": {"blob": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}}'

    response = http.post("/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["type"] == "urn:startproc:problem:too-large"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"target": "orders", ', "not valid JSON"),
        (b"\xff\xfe\x00", "not"),
        (b"", "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    ],
)
def test_malformed_json_is_400(http: httpx.Client, body: bytes, detail: str) -> None:
    response = http.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_TYPE
    assert response.json()["title"] == "Malformed JSON"
    assert detail in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [([], ""), ("a string", ""), ({"process": "p"}, "target")],
)
def test_wrong_shapes_are_422_with_field_paths(http: httpx.Client, body: Any, field: str) -> None:
    response = http.post("/jobs", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


def test_other_media_types_are_415(http: httpx.Client) -> None:
    response = http.post("/jobs", content=b"target=orders", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.headers["content-type"] == PROBLEM_TYPE


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("DELETE", "/jobs", 405), ("GET", "/jobs", 422)],
)
def test_routing_errors_are_problems(
    http: httpx.Client, method: str, path: str, status: int
) -> None:
    response = http.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_TYPE
    assert response.json()["status"] == status
    if status == 405:
        assert response.headers["allow"] == "GET, POST"
    if status == 422:
        assert response.json()["errors"][0]["field"] == "idempotency_key"


def test_a_custom_job_id_is_kept(http: httpx.Client, live: Pipeline) -> None:
    job_id = f"client-{uuid.uuid4().hex}"
    response = http.post("/jobs", json=order("C-1", job_id=job_id))
    assert response.json() == {"job_ids": [job_id]}
    assert live.wait(job_id).status == "created"
