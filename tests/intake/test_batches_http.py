"""POST /batches and GET /batches/{id} over real HTTP, wired to `worker.batch.submit`."""

from __future__ import annotations

import json

import httpx
import pytest
import redis

from worker.intake.problems import PROBLEM_TYPE

from .helpers import Pipeline, wait_until

pytestmark = pytest.mark.integration

CSV = "customer_id,name,amount\nC-1,Ada,10\nC-2,Grace,20\n"
PARAMS = {"target": "orders", "process": "order-process", "business_key": "customer_id"}


def test_csv_upload_starts_one_instance_per_row(http: httpx.Client, live: Pipeline) -> None:
    response = http.post(
        "/batches", params=PARAMS, files={"file": ("customers.csv", CSV, "text/csv")}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["batch_id"] == "customers.csv:orders:order-process"
    assert (body["rows"], body["valid"], body["invalid"], body["enqueued"]) == (2, 2, 0, 2)
    assert response.headers["location"] == "/batches/customers.csv:orders:order-process"

    c8 = live.sandbox.app("camunda8")
    assert c8.wait_for_instances(2, timeout=30)
    wait_until(
        lambda: http.get(response.headers["location"]).json()["done"] == 2, 30, "batch counters"
    )
    status = http.get(response.headers["location"]).json()
    assert (status["created"], status["expected"], status["pending"]) == (2, 2, 0)
    assert sorted(i["variables"]["name"] for i in c8.instances) == ["Ada", "Grace"]

    again = http.post("/batches", params=PARAMS, files={"file": ("customers.csv", CSV, "text/csv")})
    assert again.status_code == 202
    assert again.json()["enqueued"] + again.json()["already_done"] == 2
    assert c8.count() == 2, "the same batch posted again starts nothing twice"


def test_json_array_and_raw_jsonl_bodies(http: httpx.Client, live: Pipeline) -> None:
    rows = [{"customer_id": "J-1", "name": "Lin"}, {"customer_id": "J-2", "name": "Kay"}]
    params = {**PARAMS, "batch_id": "api-rows"}
    array = http.post("/batches", params=params, json=rows)
    assert array.status_code == 202, array.text
    assert array.json()["format"] == "jsonl" and array.json()["enqueued"] == 2

    lines = "\n".join(json.dumps({"customer_id": f"N-{n}", "n": n}) for n in range(3))
    raw = http.post(
        "/batches",
        params={**PARAMS, "batch_id": "raw-rows"},
        content=lines.encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert raw.status_code == 202, raw.text
    assert raw.json()["enqueued"] == 3
    assert live.sandbox.app("camunda8").wait_for_instances(5, timeout=30)


def test_invalid_rows_send_nothing(
    http: httpx.Client, live: Pipeline, redis_client: redis.Redis
) -> None:
    bad = "customer_id,name\nC-1,Ada\n,NoKey\nC-1,Twice\n"
    response = http.post("/batches", params=PARAMS, files={"file": ("bad.csv", bad, "text/csv")})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_TYPE
    problem = response.json()
    assert "nothing was enqueued" in problem["detail"]
    assert {e["line"] for e in problem["errors"]} == {3, 4}
    assert all(e["field"] == "customer_id" for e in problem["errors"])
    assert redis_client.llen("startproc.jobs") == 0
    assert live.sandbox.app("camunda8").count() == 0


def test_dry_run_validates_only(http: httpx.Client, redis_client: redis.Redis) -> None:
    response = http.post(
        "/batches",
        params={**PARAMS, "dry_run": "true"},
        files={"file": ("customers.csv", CSV, "text/csv")},
    )
    assert response.status_code == 200
    assert response.json()["valid"] == 2 and response.json()["enqueued"] == 0
    assert redis_client.llen("startproc.jobs") == 0


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"json": [{"a": 1}]}, 422, "batch_id"),
        ({"content": b"a,b\n1,2\n", "headers": {"Content-Type": "text/csv"}}, 422, "batch_id"),
        ({"content": b"<xml/>", "headers": {"Content-Type": "application/xml"}}, 415, "text/csv"),
        ({"files": {"other": ("x.csv", "a\n1\n")}}, 422, "'file'"),
        ({"json": {"not": "a list"}}, 422, "array"),
    ],
)
def test_bad_batch_requests(
    http: httpx.Client, kwargs: dict[str, object], status: int, needle: str
) -> None:
    response = http.post("/batches", params=PARAMS, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_TYPE
    assert needle in response.json()["detail"]


def test_unknown_target_and_unknown_batch(http: httpx.Client) -> None:
    response = http.post(
        "/batches",
        params={**PARAMS, "target": "ordres"},
        files={"file": ("customers.csv", CSV, "text/csv")},
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "target", "message": "unknown target 'ordres' (did you mean 'orders'?)"}
    ]
    assert "did you mean 'orders'" in response.json()["detail"]
    assert http.get("/batches/never:seen").status_code == 404


def test_batch_body_limit_is_separate(http: httpx.Client) -> None:
    """/batches takes bodies larger than the 1 MiB of /jobs (default 64 MiB)."""
    rows = "customer_id,pad\n" + "".join(f"C-{n},{'x' * 1000}\n" for n in range(1500))
    response = http.post(
        "/batches",
        params={**PARAMS, "dry_run": "true"},
        files={"file": ("big.csv", rows, "text/csv")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["valid"] == 1500


def test_a_misspelt_parameter_is_rejected_not_ignored(
    http: httpx.Client, redis_client: redis.Redis
) -> None:
    """Ignoring ``bussiness_key`` would key every row by its content instead: refuse it."""
    params = {"target": "orders", "process": "order-process", "bussiness_key": "customer_id"}
    response = http.post(
        "/batches", params=params, files={"file": ("customers.csv", CSV, "text/csv")}
    )
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == "bussiness_key"
    assert "did you mean 'business_key'" in error["message"]
    assert redis_client.llen("startproc.jobs") == 0
