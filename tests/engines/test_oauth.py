"""OAuth2 as enterprises run it: renewal ahead of expiry, refusals not hammered, scopes,
and one token shared by every worker process through Redis.

Renewal and back-off use `responses` and the fake clock of tests/engines/test_auth.py;
the shared cache and scopes use real Redis and the sandbox's token endpoint.
"""

from __future__ import annotations

import json
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
import responses
import structlog
from kombu import Connection
from redis.backoff import NoBackoff
from redis.retry import Retry

import worker.engines.auth
from tests.conftest import make_settings
from tests.support.oauth import TOKEN_URL, Clock, grant, provider, token_calls
from tests.support.service import run
from worker.engines.auth import OAuth2, client_identity, credentials_for
from worker.engines.http import make_session
from worker.engines.token_cache import SharedTokens
from worker.errors import AuthenticationError, TransientError
from worker.keys import oauth_token_key
from worker.local.sandbox import SandboxServer
from worker.local.sandbox.camunda8 import Camunda8App
from worker.runtime import build_runtime
from worker.targets import Targets

SECRET = "oauth-test-secret"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(worker.engines.auth, "time", types.SimpleNamespace(monotonic=fake))
    return fake


# ---------------------------------------------------------------- renewal ahead of expiry


@responses.activate
def test_in_the_renewal_window_one_thread_renews_and_the_others_do_not_wait(
    clock: Clock,
) -> None:
    responses.post(TOKEN_URL, json=grant("t1", 60))
    oauth = provider(refresh_margin=20)  # renew from 40 s, spent from 55 s
    assert oauth.token() == "t1"
    clock.now += 45
    release, entered = threading.Event(), threading.Event()

    def slow_grant(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        entered.set()
        assert release.wait(10)
        return 200, {}, json.dumps(grant("t2", 60))

    responses.add_callback(responses.POST, TOKEN_URL, callback=slow_grant)
    renewed: list[str] = []
    renewer = threading.Thread(target=lambda: renewed.append(oauth.token()))
    renewer.start()
    assert entered.wait(10)  # the renewal is under way...
    assert [oauth.token() for _ in range(3)] == ["t1"] * 3  # ...and nobody waits for it
    release.set()
    renewer.join(10)
    assert renewed == ["t2"] and oauth.token() == "t2"
    assert len(token_calls()) == 2


@responses.activate
def test_a_failed_renewal_keeps_the_token_and_is_tried_again_later(clock: Clock) -> None:
    responses.post(TOKEN_URL, json=grant("t1", 60))
    oauth = provider(refresh_margin=20)
    assert oauth.token() == "t1"
    responses.replace(responses.POST, TOKEN_URL, status=503)
    clock.now += 41
    assert oauth.token() == "t1"  # the endpoint failed; the token is still good
    assert oauth.token() == "t1" and len(token_calls()) == 2  # not asked again at once
    clock.now += 5
    assert oauth.token() == "t1" and len(token_calls()) == 3  # asked again after a pause
    clock.now += 10  # 56 s: spent
    with pytest.raises(TransientError):
        oauth.token()
    responses.replace(responses.POST, TOKEN_URL, json=grant("t2", 60))
    assert oauth.token() == "t2"


# ---------------------------------------------------------------- refusals


@responses.activate
def test_after_a_refusal_the_token_endpoint_is_left_alone_for_a_growing_while(
    clock: Clock,
) -> None:
    responses.post(TOKEN_URL, json={"error": "invalid_client"}, status=401)
    oauth = provider()
    with pytest.raises(AuthenticationError):
        oauth.token()
    for _ in range(20):  # 20 jobs in a row: one request
        with pytest.raises(AuthenticationError, match=r"not asked again for 5 s") as caught:
            oauth.token()
    assert len(token_calls()) == 1
    assert caught.value.http_status == 401
    assert caught.value.engine_error == {"error": "invalid_client"}
    clock.now += 5
    with pytest.raises(AuthenticationError):
        oauth.token()
    assert len(token_calls()) == 2
    with pytest.raises(AuthenticationError, match=r"not asked again for 10 s"):
        oauth.token()
    clock.now += 10
    responses.replace(responses.POST, TOKEN_URL, json=grant("t1"))
    assert oauth.token() == "t1"  # fixed meanwhile: a success resets the pause
    assert len(token_calls()) == 3


@responses.activate
def test_a_server_failure_is_not_a_refusal(clock: Clock) -> None:
    responses.post(TOKEN_URL, status=503)
    oauth = provider()
    for attempt in range(1, 4):
        with pytest.raises(TransientError):
            oauth.token()
        assert len(token_calls()) == attempt


# ---------------------------------------------------------------- scope (sandbox)


@pytest.fixture
def c8(sandbox: SandboxServer) -> Iterator[Camunda8App]:
    app = sandbox.app("camunda8")
    app.auth.configure(type="oauth2", client_id="worker", client_secret=SECRET,
                       scope="api://startproc/.default")
    yield app
    app.auth.configure(type="none")


def oauth_target(sandbox: SandboxServer, **auth: Any) -> Targets:
    raw = {"engine": "camunda8", "base_url": sandbox.base_url("camunda8"), "timeout": 5,
           "auth": {"type": "oauth2", "token_url": sandbox.token_url("camunda8"),
                    "client_id": "worker", "client_secret": SECRET, **auth}}
    return Targets.from_dict({"targets": {"entra": raw}}, env={})


@pytest.mark.parametrize(("auth", "status"), [
    ({"scope": "api://startproc/.default"}, "created"),
    ({"scope": "api://startproc/.default", "audience": "zeebe-api"}, "created"),
    ({"audience": "zeebe-api"}, "failed"),
], ids=["scope", "scope and audience", "audience only"])
def test_a_scope_checking_identity_provider(
    redis_url: str, sandbox: SandboxServer, c8: Camunda8App, auth: dict[str, str], status: str
) -> None:
    rt = build_runtime(make_settings(redis_url), oauth_target(sandbox, **auth),
                       Connection(redis_url))
    result = run(rt, {"target": "entra", "process": "order-process"}, "scope-1")
    assert result.status == status
    if status == "failed":
        assert result.error is not None and result.error.kind == "permanent"
        assert "invalid_scope" in result.error.message and SECRET not in result.to_json()


# ---------------------------------------------------------------- one token for every process


def shared_provider(sandbox: SandboxServer, client: redis.Redis) -> OAuth2:
    """What each worker process builds: its own session and provider, the same Redis."""
    auth = oauth_target(sandbox, scope="api://startproc/.default", token_cache="redis")
    credentials = credentials_for(auth["entra"].auth, make_session(), 5.0, client)
    assert isinstance(credentials, OAuth2)
    return credentials


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def test_processes_share_one_token_kept_in_redis_until_its_renewal(
    sandbox: SandboxServer, c8: Camunda8App, client: redis.Redis
) -> None:
    c8.auth.configure(type="oauth2", client_id="worker", client_secret=SECRET,
                      scope="api://startproc/.default", token_ttl=120)
    with structlog.testing.capture_logs() as logs:
        tokens = {shared_provider(sandbox, client).token() for _ in range(5)}
    assert len(tokens) == 1 and c8.stats()["token_requests"] == 1
    [token] = tokens
    [key] = client.keys("startproc:oauth-token:*")
    auth = oauth_target(sandbox, scope="api://startproc/.default")["entra"].auth
    assert key.decode() == oauth_token_key(client_identity(auth))  # type: ignore[arg-type]
    assert token not in key.decode()
    assert 0 < client.pttl(key) <= 90_000  # 120 s minus the 30 s margin: before expiry
    assert token not in repr(logs)


def test_a_cold_start_of_many_processes_fetches_one_token(
    sandbox: SandboxServer, c8: Camunda8App, client: redis.Redis
) -> None:
    c8.faults.configure(token_latency_ms=300)  # the first fetch is still running...
    providers = [shared_provider(sandbox, client) for _ in range(8)]
    got: list[str] = []
    threads = [threading.Thread(target=lambda p=p: got.append(p.token())) for p in providers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert len(got) == 8 and len(set(got)) == 1  # ...while the others wait for it
    assert c8.stats()["token_requests"] == 1


def test_a_rejected_token_is_dropped_only_if_it_is_still_the_shared_one(
    sandbox: SandboxServer, c8: Camunda8App, client: redis.Redis
) -> None:
    first, second = shared_provider(sandbox, client), shared_provider(sandbox, client)
    stale = first.token()
    first.invalidate()  # the engine answered 401 to it
    assert client.keys("startproc:oauth-token:*") == []
    fresh = second.token()  # another process renews it
    assert fresh != stale and c8.stats()["token_requests"] == 2
    shared = SharedTokens(client, client_identity(first._config))
    shared.drop(stale)  # a late 401 for the stale token changes nothing
    found = shared.get()
    assert found is not None and found.access_token == fresh


def test_without_redis_each_process_fetches_its_own(
    sandbox: SandboxServer, c8: Camunda8App
) -> None:
    closed = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2,
                         retry=Retry(NoBackoff(), 0))
    with structlog.testing.capture_logs() as logs:
        token = shared_provider(sandbox, closed).token()
    assert token and c8.stats()["token_requests"] == 1
    assert [e["event"] for e in logs] == ["oauth.shared_cache_unavailable"]
    assert token not in repr(logs)
