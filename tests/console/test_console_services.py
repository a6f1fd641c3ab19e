"""What the console builds on, against a real Redis: outcomes per minute, liveness beacons,
dead letters settled by hand, the session cookie, and the import rule (no Celery)."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import redis
from pydantic import SecretStr
from starlette.requests import Request

from tests.conftest import make_settings
from worker import keys
from worker.console.session import COOKIE, Sessions, csrf_ok
from worker.delivery import dlq
from worker.delivery.beacons import Beacon, live_workers
from worker.delivery.outcomes import read_windows
from worker.delivery.results import ResultStore
from worker.models import ErrorInfo, Result

PACKAGE = Path(__file__).resolve().parents[2] / "worker"


def test_outcomes_are_counted_per_minute_and_target(redis_client: redis.Redis) -> None:
    store = ResultStore(redis_client, lambda _r: None, retention_days=1)
    store.record(Result(job_id="a", target="orders", engine="camunda8", status="created"))
    store.record(Result(job_id="a", target="orders", engine="camunda8", status="failed"))
    store.record(Result(job_id="b", target="orders", engine="camunda8", status="duplicate"))
    failed = ErrorInfo(kind="invalid", message="no")
    store.record(Result(job_id="c", target="ordres", status="failed", error=failed))
    now = time.time()
    windows = read_windows(redis_client, now=now)
    orders = windows.short["orders"]
    assert (orders.created, orders.duplicate, orders.failed) == (1, 1, 0), "a job counts once"
    assert windows.short["(unknown)"].failed == 1, "an invalid job's target is not a label"
    assert orders.error_ratio == 0.0 and windows.short["(unknown)"].error_ratio == 1.0
    later = read_windows(redis_client, now=now + 6 * 60)
    assert later.short == {} and later.long["orders"].created == 1
    assert read_windows(redis_client, now=now + 61 * 60).long == {}
    ttl = redis_client.ttl(keys.outcomes_minute(int(now // 60)))
    assert 0 < int(ttl) <= keys.OUTCOMES_TTL  # type: ignore[arg-type]


def test_a_beacon_makes_a_worker_live_until_it_stops(redis_client: redis.Redis) -> None:
    beacon = Beacon(redis_client, "celery@host-1", {"pool": "threads", "concurrency": 4}).start()
    deadline = time.monotonic() + 5
    while not live_workers(redis_client):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (worker,) = live_workers(redis_client)
    assert worker.name == "celery@host-1" and worker.info["concurrency"] == 4
    assert live_workers(redis_client, fresh=-1) == [], "an old beacon is not alive"
    beacon.stop()
    assert live_workers(redis_client) == []


def _dead_letter(client: redis.Redis, job_id: str = "j-1") -> dict[str, object]:
    job = {"target": "approvals", "process": "p", "business_key": "BK", "variables": {"a": 1}}
    dlq.DeadLetters(client).add(job_id, job, "ambiguous", {"kind": "ambiguous", "message": "?"})
    return job


def test_a_persons_resolution_is_kept_for_the_jobs_page(redis_client: redis.Redis) -> None:
    """Settling itself is `worker.delivery.settle`'s (tests/cli/test_dlq_cli.py,
    tests/delivery/test_ledger.py)."""
    job = _dead_letter(redis_client)
    entry = dlq.DeadLetters(redis_client).get("j-1")
    assert entry is not None and entry["job"] == job
    assert dlq.resolution("j-1", redis_client) is None
    dlq.remember_resolution(redis_client, "j-1", "created", "42", "ops", entry)
    kept = dlq.resolution("j-1", redis_client)
    assert kept is not None and (kept["resolution"], kept["instance_id"], kept["by"]) == (
        "created", "42", "ops"
    )


def _request(cookie: str | None) -> Request:
    headers = [(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie else []
    return Request({"type": "http", "method": "GET", "path": "/ui/", "headers": headers})


def _cookie_of(sessions: Sessions, session: object) -> str:
    from starlette.responses import Response

    response = Response()
    sessions.save(response, session)  # type: ignore[arg-type]
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/ui" in header
    return header.split(";", 1)[0].split("=", 1)[1]


def test_the_session_cookie_is_signed_names_no_token_and_ends_with_the_token(
    redis_url: str,
) -> None:
    cfg = make_settings(redis_url, intake_tokens=SecretStr("ops:op-secret-123:rw,v:v-secret:ro"))
    sessions = Sessions(cfg)
    signed = sessions.sign_in("v-secret")
    assert signed is not None and not signed.can_change and sessions.sign_in("nope") is None
    cookie = _cookie_of(sessions, signed)
    assert "v-secret" not in cookie
    loaded = sessions.load(_request(cookie))
    assert loaded is not None and loaded.user == signed.user and csrf_ok(loaded, signed.csrf)
    assert not csrf_ok(loaded, "") and not csrf_ok(loaded, signed.csrf + "x")
    assert sessions.load(_request(cookie[:-2] + "xx")) is None, "tampered"
    rotated = Sessions(
        make_settings(redis_url, intake_tokens=SecretStr("ops:op-secret-123:rw,v:new:ro"))
    )
    assert rotated.load(_request(cookie)) is None, "a token taken away signs its sessions out"
    fixed = make_settings(redis_url, intake_tokens=SecretStr("v:v-secret:ro"), ui_secret="k" * 32)
    kept = Sessions(fixed)
    assert kept.load(_request(_cookie_of(kept, kept.sign_in("v-secret")))) is not None
    expired = Sessions(fixed)
    expired.max_age = -1
    assert expired.load(_request(_cookie_of(kept, kept.sign_in("v-secret")))) is None


def test_the_console_imports_no_celery() -> None:
    for path in sorted((PACKAGE / "console").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {n for n in names if n.split(".")[0] == "celery"}, path.name
        assert "worker.celery_app" not in names and "worker.tasks" not in names, path.name
