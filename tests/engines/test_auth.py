"""Credentials providers: basic, bearer and the cached, thread-shared OAuth2 token.

The token endpoint is mocked with `responses`; time is a fake monotonic
clock installed as ``worker.engines.auth.time``, so expiry is tested without sleeping.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses

from tests.support.oauth import (
    API,
    PASSWORD,
    SECRET,
    TOKEN_URL,
    Clock,
    config,
    grant,
    provider,
    token_calls,
)
from worker.engines import build_engine
from worker.engines.auth import DEFAULT_TOKEN_LIFETIME, credentials_for
from worker.engines.base import StartRequest
from worker.engines.http import make_session
from worker.errors import (
    AuthenticationError,
    ConfigError,
    JobError,
    PermanentError,
    TransientError,
)
from worker.targets import BasicAuth, BearerAuth, NoAuth, Targets


def form_of(call: Any) -> dict[str, str]:
    parsed = parse_qs(call.request.body, strict_parsing=True)
    return {k: v[0] for k, v in parsed.items()}


# ---------------------------------------------------------------- caching


@responses.activate
def test_token_is_fetched_once_and_cached(clock: Clock) -> None:
    responses.post(TOKEN_URL, json=grant("t1"))
    oauth = provider()
    assert [oauth.token() for _ in range(5)] == ["t1"] * 5
    assert len(token_calls()) == 1
    assert oauth.fetch_count == 1


@responses.activate
def test_token_is_sent_as_a_bearer_header(clock: Clock) -> None:
    responses.post(TOKEN_URL, json=grant("t1"))
    responses.get(API, json={})
    session = make_session()
    oauth = provider()
    for _ in range(3):
        session.get(API, auth=oauth)
    api_calls = [c for c in responses.calls if c.request.url == API]
    assert [c.request.headers["Authorization"] for c in api_calls] == ["Bearer t1"] * 3
    assert len(token_calls()) == 1


@responses.activate
def test_ten_threads_share_one_token_request() -> None:
    responses.post(TOKEN_URL, json=grant("t1"))
    responses.get(API, json={})
    oauth = provider()
    session = make_session()
    barrier = threading.Barrier(10)
    seen: list[str] = []
    failures: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=5)
            response = session.get(API, auth=oauth)
            seen.append(response.request.headers["Authorization"])
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not failures
    assert seen == ["Bearer t1"] * 10
    assert len(token_calls()) == 1
    assert oauth.fetch_count == 1


@responses.activate
def test_threads_after_expiry_refresh_once(clock: Clock) -> None:
    """Past the renewal window (the token is spent) every thread waits for the one fetch."""
    responses.post(TOKEN_URL, json=grant("t1", 60))
    responses.post(TOKEN_URL, json=grant("t2", 60))
    oauth = provider(refresh_margin=10)
    assert oauth.token() == "t1"
    clock.now += 55  # renewal from 50 s, spent from 55 s (the last 5 s are not used)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(oauth.token())) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == ["t2"] * 10
    assert len(token_calls()) == 2


# ---------------------------------------------------------------- expiry


@responses.activate
def test_refreshed_shortly_before_expiry(clock: Clock) -> None:
    responses.post(TOKEN_URL, json=grant("t1", 60))
    responses.post(TOKEN_URL, json=grant("t2", 60))
    oauth = provider(refresh_margin=10)
    assert oauth.token() == "t1"
    clock.now += 49.9
    assert oauth.token() == "t1"
    assert len(token_calls()) == 1
    clock.now += 0.1  # 60 s lifetime - 10 s margin
    assert oauth.token() == "t2"
    assert len(token_calls()) == 2
    clock.now += 49.9
    assert oauth.token() == "t2"
    assert len(token_calls()) == 2


@responses.activate
def test_margin_is_at_most_half_the_lifetime(clock: Clock) -> None:
    responses.post(TOKEN_URL, json=grant("t1", 10))
    responses.post(TOKEN_URL, json=grant("t2", 10))
    oauth = provider(refresh_margin=30)
    assert oauth.token() == "t1"
    clock.now += 4.9
    assert oauth.token() == "t1"
    clock.now += 0.1
    assert oauth.token() == "t2"


@responses.activate
def test_zero_margin_uses_the_whole_lifetime(clock: Clock) -> None:
    responses.post(TOKEN_URL, json=grant("t1", 5))
    responses.post(TOKEN_URL, json=grant("t2", 5))
    oauth = provider(refresh_margin=0)
    assert oauth.token() == "t1"
    clock.now += 4.99
    assert oauth.token() == "t1"
    clock.now += 0.01
    assert oauth.token() == "t2"


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [
        (None, DEFAULT_TOKEN_LIFETIME),
        ("abc", DEFAULT_TOKEN_LIFETIME),
        ("120", 120.0),
        (0, 1.0),
        (-5, 1.0),
    ],
)
@responses.activate
def test_lifetime_from_expires_in(clock: Clock, expires_in: Any, lifetime: float) -> None:
    body = grant("t1") if expires_in is None else grant("t1", expires_in)
    if expires_in is None:
        del body["expires_in"]
    responses.post(TOKEN_URL, json=body)
    responses.post(TOKEN_URL, json=grant("t2"))
    oauth = provider(refresh_margin=0)
    assert oauth.token() == "t1"
    clock.now += lifetime - 0.001
    assert oauth.token() == "t1"
    clock.now += 0.001
    assert oauth.token() == "t2"


@responses.activate
def test_invalidate_forces_a_new_token(clock: Clock) -> None:
    responses.post(TOKEN_URL, json=grant("t1"))
    responses.post(TOKEN_URL, json=grant("t2"))
    oauth = provider()
    assert oauth.token() == "t1"
    oauth.invalidate()
    assert oauth.token() == "t2"
    assert oauth.token() == "t2"
    assert len(token_calls()) == 2


def test_invalidate_without_a_token_is_harmless() -> None:
    provider().invalidate()


def test_only_oauth2_is_refreshable() -> None:
    session = make_session()
    assert credentials_for(config(), session, 1.0).refreshable is True
    basic = BasicAuth(type="basic", username="u", password=PASSWORD)  # type: ignore[arg-type]
    bearer = BearerAuth(type="bearer", token=SECRET)  # type: ignore[arg-type]
    for auth in (basic, bearer, NoAuth()):
        assert credentials_for(auth, session, 1.0).refreshable is False


# ---------------------------------------------------------------- the token request


@responses.activate
def test_client_credentials_form(clock: Clock) -> None:
    responses.post(TOKEN_URL, json=grant())
    provider(audience="zeebe-api", scope="orchestration").token()
    [call] = token_calls()
    assert call.request.method == "POST"
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert call.request.headers["Accept"] == "application/json"
    assert "Authorization" not in call.request.headers
    assert form_of(call) == {
        "grant_type": "client_credentials",
        "client_id": "worker",
        "client_secret": SECRET,
        "audience": "zeebe-api",
        "scope": "orchestration",
    }
    assert call.request.req_kwargs["timeout"] == 4.0


@responses.activate
def test_no_audience_or_scope_when_not_configured(clock: Clock) -> None:
    responses.post(TOKEN_URL, json=grant())
    provider().token()
    assert set(form_of(token_calls()[0])) == {"grant_type", "client_id", "client_secret"}


@responses.activate
def test_password_grant_form(clock: Clock) -> None:
    responses.post(TOKEN_URL, json=grant())
    oauth = provider(
        grant="password", client_secret=None, username="demo", password=PASSWORD, scope="openid"
    )
    oauth.token()
    assert form_of(token_calls()[0]) == {
        "grant_type": "password",
        "client_id": "worker",
        "username": "demo",
        "password": PASSWORD,
        "scope": "openid",
    }


@responses.activate
def test_password_grant_with_a_client_secret(clock: Clock) -> None:
    responses.post(TOKEN_URL, json=grant())
    provider(grant="password", username="demo", password=PASSWORD).token()
    form = form_of(token_calls()[0])
    assert form["client_secret"] == SECRET
    assert form["password"] == PASSWORD


@pytest.mark.parametrize(
    "fields",
    [
        {"grant": "password", "client_secret": None},
        {"grant": "password", "username": "demo"},
        {"client_secret": None},
        {"token_url": "ftp://idp.test/token"},
        {"grant": "implicit"},
    ],
)
def test_incomplete_oauth2_config_is_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        config(**fields)


# ---------------------------------------------------------------- token endpoint errors


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "invalid_client", "error_description": "Invalid client credentials"}),
        (400, {"error": "invalid_grant", "error_description": "Bad user credentials"}),
        (400, {"error": "unauthorized_client"}),
        (400, {"error": "invalid_scope"}),
        (401, None),
        (403, "<html>Forbidden</html>"),
    ],
)
@responses.activate
def test_rejected_credentials_are_an_authentication_error(
    clock: Clock, status: int, body: Any
) -> None:
    if isinstance(body, dict):
        responses.post(TOKEN_URL, json=body, status=status)
    else:
        responses.post(TOKEN_URL, body=body or b"", status=status)
    with pytest.raises(AuthenticationError) as caught:
        provider().token()
    error = caught.value
    assert isinstance(error, PermanentError)
    assert error.http_status == status
    assert error.as_error_info()["kind"] == "permanent"
    if isinstance(body, dict):
        assert body["error"] in error.message
        assert error.engine_error == body
    else:
        assert error.engine_error is None


@responses.activate
def test_unknown_oauth_error_code_is_permanent(clock: Clock) -> None:
    responses.post(TOKEN_URL, json={"error": "access_denied"}, status=403)
    with pytest.raises(PermanentError, match="access_denied") as caught:
        provider().token()
    assert type(caught.value) is PermanentError


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
@responses.activate
def test_server_side_failures_are_transient(clock: Clock, status: int) -> None:
    responses.post(TOKEN_URL, json={"error": "temporarily_unavailable"}, status=status)
    with pytest.raises(TransientError) as caught:
        provider().token()
    assert type(caught.value) is TransientError
    assert caught.value.http_status == status


@pytest.mark.parametrize(
    "failure",
    [
        requests.ConnectionError("Connection refused"),
        requests.ConnectTimeout("connect timeout"),
        requests.ReadTimeout("read timeout"),
    ],
)
@responses.activate
def test_unreachable_token_endpoint_is_transient(clock: Clock, failure: Exception) -> None:
    responses.post(TOKEN_URL, body=failure)
    with pytest.raises(TransientError, match="token endpoint unreachable"):
        provider().token()


@pytest.mark.parametrize(
    "body",
    [{}, {"token_type": "Bearer"}, {"access_token": ""}, {"access_token": 5}, [1], "ok"],
)
@responses.activate
def test_answer_without_an_access_token_is_permanent(clock: Clock, body: Any) -> None:
    if isinstance(body, str):
        responses.post(TOKEN_URL, body=body)
    else:
        responses.post(TOKEN_URL, json=body)
    with pytest.raises(PermanentError, match="without an access_token") as caught:
        provider().token()
    assert type(caught.value) is PermanentError


@responses.activate
def test_a_failed_fetch_is_not_cached(clock: Clock) -> None:
    responses.post(TOKEN_URL, status=503)
    responses.post(TOKEN_URL, json=grant("t1"))
    oauth = provider()
    with pytest.raises(TransientError):
        oauth.token()
    assert oauth.token() == "t1"
    assert len(token_calls()) == 2


@responses.activate
def test_token_error_surfaces_from_the_engine_call(clock: Clock) -> None:
    responses.post(TOKEN_URL, json={"error": "invalid_client"}, status=401)
    with pytest.raises(AuthenticationError):
        make_session().get(API, auth=provider())
    assert not [c for c in responses.calls if c.request.url == API]


# ---------------------------------------------------------------- secrets never shown


def everything_said(error: JobError) -> str:
    return f"{error!s} {error!r} {error.message} {json.dumps(error.as_error_info())}"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            401,
            {
                "error": "invalid_client",
                "error_description": "Client authentication failed",
                "request": {"client_secret": SECRET, "password": PASSWORD},
                "client_secret": SECRET,
            },
        ),
        (400, {"error": "invalid_grant", "received": f"password={PASSWORD}"}),
        (403, {"error": "access_denied", "echo": f"client_secret={SECRET}"}),
        (500, {"error": "server_error", "echo": SECRET}),
        (200, {"token_type": "Bearer", "echo": SECRET}),
    ],
)
@responses.activate
def test_secret_never_in_errors(clock: Clock, status: int, body: dict[str, Any]) -> None:
    responses.post(TOKEN_URL, json=body, status=status)
    oauth = provider(grant="password", username="demo", password=PASSWORD)
    with pytest.raises(JobError) as caught:
        oauth.token()
    said = everything_said(caught.value)
    assert SECRET not in said
    assert PASSWORD not in said


@responses.activate
def test_secret_never_in_a_transport_error(clock: Clock) -> None:
    responses.post(TOKEN_URL, body=requests.ConnectionError(f"failed sending {SECRET}"))
    with pytest.raises(TransientError) as caught:
        provider().token()
    assert SECRET not in everything_said(caught.value)


@responses.activate
def test_secret_echoed_in_error_description_is_not_repeated(clock: Clock) -> None:
    responses.post(
        TOKEN_URL,
        json={"error": "invalid_client", "error_description": f"unknown secret '{SECRET}'"},
        status=401,
    )
    with pytest.raises(AuthenticationError) as caught:
        provider().token()
    assert SECRET not in everything_said(caught.value)


@responses.activate
def test_secret_never_in_repr_of_the_provider(clock: Clock) -> None:
    responses.post(TOKEN_URL, json=grant("the-access-token"))
    oauth = provider(grant="password", username="demo", password=PASSWORD)
    oauth.token()
    for text in (repr(oauth), str(oauth)):
        assert SECRET not in text
        assert PASSWORD not in text
        assert "the-access-token" not in text


def test_secret_never_in_repr_of_basic_and_bearer() -> None:
    session = make_session()
    basic = credentials_for(
        BasicAuth(type="basic", username="u", password=PASSWORD),  # type: ignore[arg-type]
        session,
        1.0,
    )
    bearer = credentials_for(
        BearerAuth(type="bearer", token=SECRET),  # type: ignore[arg-type]
        session,
        1.0,
    )
    assert PASSWORD not in repr(basic)
    assert SECRET not in repr(bearer)


def test_secret_never_in_repr_of_the_target() -> None:
    targets = Targets.from_dict(
        {
            "targets": {
                "t": {
                    "engine": "camunda8",
                    "base_url": "http://c8.test",
                    "auth": {
                        "type": "oauth2",
                        "token_url": TOKEN_URL,
                        "client_id": "worker",
                        "client_secret": "${C8_SECRET}",
                        "grant": "password",
                        "username": "demo",
                        "password": "${C8_PASSWORD}",
                    },
                }
            }
        },
        env={"C8_SECRET": SECRET, "C8_PASSWORD": PASSWORD},
    )
    target = targets["t"]
    assert target.auth.client_secret.get_secret_value() == SECRET  # type: ignore[union-attr]
    for text in (repr(target), str(target), repr(target.auth), repr(targets), str(dict(targets))):
        assert SECRET not in text
        assert PASSWORD not in text
    assert SECRET not in target.model_dump_json()


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "oauth2", "token_url": TOKEN_URL, "client_id": "w", "client_secrt": SECRET},
        {"type": "oauth2", "token_url": "not a url", "client_id": "w", "client_secret": SECRET},
        {"type": "basic", "username": "", "password": PASSWORD},
        {"type": "basic", "username": "u", "password": PASSWORD, "pasword": PASSWORD},
        {"type": "bearer", "token": SECRET, "tokn": SECRET},
    ],
)
def test_secret_never_in_config_errors(auth: dict[str, Any]) -> None:
    raw = {"engine": "camunda8", "base_url": "http://c8.test", "auth": auth}
    with pytest.raises(ConfigError) as caught:
        Targets.from_dict({"targets": {"t": raw}}, env={})
    assert SECRET not in str(caught.value)
    assert PASSWORD not in str(caught.value)


# ---------------------------------------------------------------- basic and bearer


@responses.activate
def test_basic_and_bearer_headers() -> None:
    responses.get(API, json={})
    session = make_session()
    basic = BasicAuth(type="basic", username="demo", password="pw")  # type: ignore[arg-type]
    bearer = BearerAuth(type="bearer", token="tok")  # type: ignore[arg-type]
    session.get(API, auth=credentials_for(basic, session, 1.0))
    session.get(API, auth=credentials_for(bearer, session, 1.0))
    session.get(API, auth=credentials_for(NoAuth(), session, 1.0))
    headers = [c.request.headers.get("Authorization") for c in responses.calls]
    assert headers == ["Basic ZGVtbzpwdw==", "Bearer tok", None]


# ---------------------------------------------------------------- refresh after 401


@responses.activate
def test_a_late_401_keeps_the_token_another_thread_just_refreshed() -> None:
    """Two threads sent with token t1 and both got 401. The first refreshed to t2 and its
    retry went through; the second's refresh comes after it and must not throw t2 away."""
    responses.post(TOKEN_URL, json=grant("t1"))
    responses.post(TOKEN_URL, json=grant("t2"))
    responses.post(TOKEN_URL, json=grant("t3"))
    both_sent_t1 = threading.Barrier(2, timeout=5)
    t2_used = threading.Event()

    def api(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        token = request.headers["Authorization"]
        if token == "Bearer t1":
            if both_sent_t1.wait() == 1:  # the slower 401: after the other's refresh
                assert t2_used.wait(timeout=5)
            return 401, {}, ""
        if token == "Bearer t2":
            t2_used.set()
        return 200, {}, "{}"

    responses.add_callback(responses.GET, API, callback=api)
    target = {"engine": "camunda8", "base_url": "http://api.test", "auth": config().model_dump()}
    targets = Targets.from_dict({"targets": {"t": target}}, env={})
    engine = build_engine(targets["t"])
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(lambda _: engine.fetch(StartRequest("GET", "/v2/topology")), [1, 2])
        )
    assert answers == [{}, {}]
    assert [c.request.headers["Authorization"] for c in api_calls()].count("Bearer t2") == 2
    assert len(token_calls()) == 2


def api_calls() -> list[Any]:
    return [c for c in responses.calls if c.request.url == API]


@responses.activate
def test_invalidating_a_replaced_token_keeps_the_new_one(clock: Clock) -> None:
    responses.post(TOKEN_URL, json=grant("t1"))
    responses.post(TOKEN_URL, json=grant("t2"))
    oauth = provider()
    stale = requests.Request("GET", API, auth=oauth).prepare()  # sent with t1
    oauth.invalidate(stale)
    assert oauth.token() == "t2"
    oauth.invalidate(stale)  # a second 401 for the same old token
    assert oauth.token() == "t2"
    assert len(token_calls()) == 2
