"""The intake app on its own: auth policy, outages, failures, the CLI, the committed OpenAPI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kombu.exceptions import OperationalError

from tests.conftest import make_settings
from worker.config import Settings
from worker.errors import ConfigError
from worker.intake import create_app, openapi_text
from worker.intake.auth import find_token, parse_entries, parse_tokens, token_matches
from worker.intake.problems import PROBLEM_TYPE, job_field_errors

from .helpers import AUTH, TOKEN, RunningServer, free_port, start_server, stop_server

REPO = Path(__file__).resolve().parents[2]
JOB = {"target": "orders", "process": "p"}


@pytest.fixture
def targets(tmp_path: Path) -> Path:
    """A targets file declaring JOB's target (the intake refuses jobs for any other)."""
    path = tmp_path / "targets.toml"
    path.write_text('[targets.orders]\nengine = "camunda8"\nbase_url = "http://127.0.0.1:9"\n')
    return path


@pytest.fixture
def serve_app() -> Iterator[Any]:
    """Start ``create_app(...)`` on a real server; stopped after the test."""
    servers: list[RunningServer] = []

    def start(cfg: Settings, **kwargs: Any) -> RunningServer:
        servers.append(start_server(create_app(cfg, **kwargs)))
        return servers[-1]

    yield start
    for running in servers:
        stop_server(running)


def dead_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_no_token_configured_refuses_to_build() -> None:
    with pytest.raises(ConfigError, match="STARTPROC_INTAKE_TOKENS is not set"):
        create_app(Settings(broker_url=dead_url()))


def test_insecure_no_auth_accepts_anyone(serve_app: Any, redis_url: str, targets: Path) -> None:
    published: list[list[dict[str, Any]]] = []

    def publisher(jobs: list[dict[str, Any]]) -> list[str]:
        published.append(jobs)
        return [j["job_id"] for j in jobs]

    running = serve_app(
        make_settings(redis_url, targets=targets), allow_anonymous=True, publisher=publisher
    )
    with running.client() as client:
        response = client.post("/jobs", json=JOB)
    assert response.status_code == 202
    assert published[0][0]["target"] == "orders"


def test_tokens_are_compared_with_each_configured_token() -> None:
    from pydantic import SecretStr

    tokens = parse_tokens(SecretStr(" one-token , ,two-token "))
    assert tokens == (b"one-token", b"two-token")
    assert token_matches("two-token", tokens)
    assert not token_matches("two-toke", tokens)
    assert not token_matches("", tokens)
    assert not token_matches("zwei-ťoken", tokens), "non-ASCII input is compared, not an error"


def test_token_entries_keep_bare_tokens_and_read_roles() -> None:
    from pydantic import SecretStr

    entries = parse_entries(SecretStr("bare-token, ops:ops-secret:rw ,viewer:v:s:ro, x:y:admin"))
    assert [(e.name, e.secret, e.role) for e in entries] == [
        ("token-1", b"bare-token", "operator"),
        ("ops", b"ops-secret", "operator"),
        ("viewer", b"v:s", "viewer"),
        ("token-4", b"x:y:admin", "operator"),
    ], "an unknown role is no role: the whole entry is a bare token, as before"
    assert parse_tokens(SecretStr("ops:ops-secret:rw")) == (b"ops-secret",)
    found = find_token("v:s", entries)
    assert found is not None and found.read_only and "v:s" not in repr(found)
    assert find_token("viewer:v:s:ro", entries) is None, "the entry is not the token"


def test_a_read_only_token_reads_but_may_not_post(
    serve_app: Any, redis_url: str, targets: Path
) -> None:
    published: list[list[dict[str, Any]]] = []

    def publisher(jobs: list[dict[str, Any]]) -> list[str]:
        published.append(jobs)
        return [j["job_id"] for j in jobs]

    cfg = make_settings(
        redis_url, intake_tokens=f"{TOKEN}, eve:read-only-secret-0123456789:ro", targets=targets
    )
    running = serve_app(cfg, publisher=publisher)
    with running.client(Authorization="Bearer read-only-secret-0123456789") as viewer:
        refused = viewer.post("/jobs", json=JOB)
        read = viewer.get("/jobs/no-such-job")
    with running.client(**AUTH) as operator:
        accepted = operator.post("/jobs", json=JOB)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "token 'eve' is read-only (role viewer): it may only read"
    assert read.status_code == 404, "reading is allowed (the job is simply unknown)"
    assert accepted.status_code == 202 and len(published) == 1


def test_healthz_reports_unreachable_redis_and_broker(serve_app: Any) -> None:
    cfg = Settings(broker_url=dead_url(), redis_url=dead_url(), intake_tokens=TOKEN)  # type: ignore[arg-type]
    with serve_app(cfg).client() as client:
        health = client.get("/healthz")
        metrics = client.get("/metrics")
    assert health.status_code == 503
    assert health.headers["content-type"] == PROBLEM_TYPE
    problem = health.json()
    assert problem["checks"]["redis"]["ok"] is False
    assert problem["checks"]["broker"]["ok"] is False
    assert "redis: ConnectionError" in problem["detail"]
    assert metrics.status_code == 200, "a scrape still answers when Redis is down"
    assert "startproc_redis_up 0.0" in metrics.text


def test_broker_outage_on_post_is_503(serve_app: Any, redis_url: str, targets: Path) -> None:
    def down(_jobs: list[dict[str, Any]]) -> list[str]:
        raise OperationalError("connection refused")

    cfg = make_settings(redis_url, intake_tokens=TOKEN, targets=targets)
    with serve_app(cfg, publisher=down).client(**AUTH) as client:
        response = client.post("/jobs", json=JOB)
    assert response.status_code == 503
    assert response.json()["detail"].startswith("the broker: unreachable (OperationalError)")
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == PROBLEM_TYPE


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def exception(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))


def test_an_unexpected_error_is_a_500_problem_without_traceback(
    serve_app: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch, targets: Path
) -> None:
    def broken(_jobs: list[dict[str, Any]]) -> list[str]:
        raise RuntimeError("secret internals /etc/passwd")

    recorder = _Recorder()
    monkeypatch.setattr("worker.intake.middleware.log", recorder)

    cfg = make_settings(redis_url, intake_tokens=TOKEN, targets=targets)
    with serve_app(cfg, publisher=broken).client(**AUTH) as client:
        response = client.post("/jobs", json=JOB)
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_TYPE
    assert response.json()["title"] == "Internal Server Error"
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert recorder.events == [("intake.unhandled", {"method": "POST", "path": "/jobs"})]


def test_size_limit_follows_the_setting(serve_app: Any, redis_url: str, targets: Path) -> None:
    cfg = make_settings(redis_url, intake_tokens=TOKEN, intake_max_body_bytes=2048, targets=targets)
    with serve_app(cfg, publisher=lambda jobs: ["x"]).client(**AUTH) as client:
        small = client.post("/jobs", json={**JOB, "variables": {"v": "x" * 1000}})
        large = client.post("/jobs", json={**JOB, "variables": {"v": "x" * 3000}})
    assert small.status_code == 202
    assert large.status_code == 413
    assert large.json()["limit_bytes"] == 2048


def test_job_errors_are_split_into_fields() -> None:
    message = "variables.a[0]: bad; thing: x; y; (job): whole; options.tgas: unknown field"
    errors = [(e.field, e.message) for e in job_field_errors(3, message)]
    assert errors == [
        ("variables.a[0]", "bad"),
        ("thing", "x; y"),
        ("", "whole"),
        ("options.tgas", "unknown field"),
    ]


def test_committed_openapi_matches_the_app() -> None:
    """Regenerate with: startproc serve --print-openapi > docs/openapi.json"""
    generated = openapi_text(create_app(Settings.model_construct(), allow_anonymous=True))
    committed = (REPO / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert committed == generated, "docs/openapi.json is stale: run startproc serve --print-openapi"
    doc = json.loads(committed)
    assert set(doc["paths"]) == {
        "/jobs",
        "/jobs/{job_id}",
        "/batches",
        "/batches/{batch_id}",
        "/healthz",
        "/metrics",
    }
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def _startproc(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_print_openapi_is_the_committed_document() -> None:
    proc = _startproc("serve", "--print-openapi", env={})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == (REPO / "docs" / "openapi.json").read_text(encoding="utf-8")


def test_cli_refuses_to_serve_without_tokens(redis_url: str) -> None:
    env = {"STARTPROC_BROKER_URL": redis_url, "STARTPROC_INTAKE_TOKENS": ""}
    proc = _startproc("serve", "--port", "0", env=env)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "STARTPROC_INTAKE_TOKENS is not set" in err and "--insecure-no-auth" in err


def test_cli_serves_insecurely_only_when_asked_and_says_so(redis_url: str, targets: Path) -> None:
    env = {
        "STARTPROC_BROKER_URL": redis_url,
        "STARTPROC_INTAKE_TOKENS": "",
        "STARTPROC_TARGETS": str(targets),
    }
    proc = _startproc("serve", "--port", "0", "--insecure-no-auth", "--json", env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the socket listens
        info = json.loads(line)
        assert info["auth"] is False and info["url"].startswith("http://127.0.0.1:")
        assert info["console"] is None, "no tokens to sign in with: no console"
        response = httpx.get(info["url"] + "/healthz", timeout=30)
        assert response.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert "WITHOUT AUTHENTICATION" in err
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why.
    assert "Finished server process" in err
    assert proc.returncode in (0, -signal.SIGTERM)


def test_missing_broker_and_redis_config_is_503_not_500(serve_app: Any, targets: Path) -> None:
    # no broker, no Redis configured
    cfg = Settings.model_construct(intake_tokens=None, targets=targets)
    with serve_app(cfg, allow_anonymous=True).client() as client:
        responses = [
            client.post("/jobs", json=JOB),
            client.get("/jobs/abc"),
            client.get("/jobs", params={"idempotency_key": "k"}),
            client.get("/batches/b"),
            client.get("/healthz"),
        ]
    for response in responses:
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == PROBLEM_TYPE
    assert "STARTPROC_BROKER_URL is not set" in responses[0].json()["detail"]


def test_cli_refuses_to_serve_with_a_bad_targets_file(redis_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    env = {
        "STARTPROC_BROKER_URL": redis_url,
        "STARTPROC_INTAKE_TOKENS": TOKEN,
        "STARTPROC_TARGETS": str(missing),
    }
    proc = _startproc("serve", "--port", "0", env=env)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # it served: stop it, the assertions below say why
            proc.kill()
            out, err = proc.communicate(timeout=10)
    assert proc.returncode == 2
    assert out == ""
    assert err == (
        f"error: {missing}: targets file not found (set STARTPROC_TARGETS; "
        "config/targets.example.toml shows every engine)\n"
    )


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_uvicorn_lines_follow_the_log_format(redis_url: str, targets: Path, fmt: str) -> None:
    env = {
        "STARTPROC_BROKER_URL": redis_url,
        "STARTPROC_INTAKE_TOKENS": TOKEN,
        "STARTPROC_TARGETS": str(targets),
        "STARTPROC_LOG_FORMAT": fmt,
    }
    proc = _startproc("serve", "--port", "0", "--json", env=env)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        url = info["url"]
        assert httpx.get(url + "/healthz", timeout=30).status_code == 200
        assert info["console"] == f"{url}/ui/"
        login = httpx.get(info["console"], timeout=30, follow_redirects=True)
        assert login.status_code == 200 and "Sign in" in login.text
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    uvicorn = [
        line for line in err.splitlines() if "GET /healthz" in line or "server process" in line
    ]
    assert any("GET /healthz" in line for line in uvicorn), err
    assert any("Finished server process" in line for line in uvicorn), err
    for line in uvicorn:
        if fmt == "json":
            record = json.loads(line)
            assert record["logger"].startswith("uvicorn.") and "timestamp" in record
        else:
            assert not line.startswith("{") and not line.startswith("INFO:"), line
