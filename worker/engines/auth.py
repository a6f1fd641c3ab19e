"""Credentials for engine calls: none, basic, bearer and cached OAuth2 tokens.

Providers are `requests.auth.AuthBase`, so an engine passes one to the
injected session and never touches a secret itself. One provider exists per
target per process and is shared by all worker threads: the OAuth2 token is
fetched once, reused until shortly before it expires, and dropped when the
engine answers 401 so the one retry gets a fresh one (only if it is still the
token that was refused: another thread may have refreshed it meanwhile).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
import requests
import structlog
from requests.auth import AuthBase, HTTPBasicAuth

from worker.engines.http import tls_refusal
from worker.engines.token_cache import Busy, SharedToken, SharedTokens
from worker.errors import AuthenticationError, JobError, PermanentError, TransientError
from worker.targets import Auth, BasicAuth, BearerAuth, OAuth2Auth

# Token endpoint errors that no retry can fix (RFC 6749 section 5.2).
_PERMANENT_OAUTH_ERRORS = {
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_request",
}
DEFAULT_TOKEN_LIFETIME = 300.0
RENEW_RETRY = 5.0
"""Seconds before a failed renewal (the current token still good) is tried again."""
SKEW = 5.0
"""A token is not sent in its last seconds (at most half the renewal margin)."""
REFUSED_FIRST, REFUSED_MAX = 5.0, 300.0
"""Seconds the token endpoint is left alone after it refused the credentials (doubling)."""

log = structlog.get_logger("worker.engines.auth")


class Credentials(AuthBase):
    """Base provider: adds nothing. ``refreshable`` says whether a 401 is worth one retry."""

    refreshable = False

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request

    @property
    def ready(self) -> bool:
        """Whether applying the credentials now needs no network call (no token to fetch)."""
        return True

    def invalidate(self, rejected: requests.PreparedRequest | None = None) -> None:
        """Forget cached credentials after the engine rejected them (on ``rejected``)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class Basic(Credentials):
    def __init__(self, config: BasicAuth) -> None:
        self._auth = HTTPBasicAuth(config.username, config.password.get_secret_value())

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        self._auth(request)
        return request


class Bearer(Credentials):
    def __init__(self, config: BearerAuth) -> None:
        self._token = config.token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        return request


@dataclass(frozen=True)
class _Grant:
    """A token and, on the monotonic clock, when to renew it and when it is spent."""

    token: str = field(repr=False)  # a secret
    renew_at: float = 0.0
    spent_at: float = 0.0


class OAuth2(Credentials):
    """Client-credentials or password grant, one token shared by the process's threads.

    * **Renewed before it expires**: from ``refresh_margin`` seconds before
      expiry one thread fetches a new token while the others keep using the
      current one; a failed renewal is tried again shortly, and only a token
      that is spent makes callers wait (or fail).
    * **Refusals are not hammered**: after the token endpoint refused the
      credentials (401, ``invalid_client``, ...) it is not asked again for
      `REFUSED_FIRST` seconds, doubling up to `REFUSED_MAX`; callers get the
      same refusal meanwhile.
    * **Shared by processes** when the target sets ``token_cache = "redis"``
      (`worker.engines.token_cache`).
    """

    refreshable = True

    def __init__(
        self,
        config: OAuth2Auth,
        session: requests.Session,
        timeout: float,
        shared: SharedTokens | None = None,
    ) -> None:
        self._config = config
        self._session = session
        self._timeout = timeout
        self._shared = shared
        self._lock = threading.RLock()
        self._grant: _Grant | None = None
        self._renewing = False
        self._renew_again = 0.0
        self._refusal: JobError | None = None
        self._refused_until = 0.0
        self._refusals = 0
        self.fetch_count = 0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        return request

    def invalidate(self, rejected: requests.PreparedRequest | None = None) -> None:
        """Drop the token ``rejected`` was sent with, if it is still the cached one.

        Compare-and-clear: threads that got 401 for the same expired token each
        call this, and one that comes after another thread's refresh must not
        throw the fresh token away (another token request, another 401 race).
        """
        sent = rejected.headers.get("Authorization") if rejected is not None else None
        with self._lock:
            grant = self._grant
            if grant is None or (sent is not None and sent != f"Bearer {grant.token}"):
                return  # another thread already replaced the token that was refused
            self._grant = None
        if self._shared is not None:
            with contextlib.suppress(redis.RedisError):
                self._shared.drop(grant.token)

    @property
    def ready(self) -> bool:
        with self._lock:
            return self._grant is not None and time.monotonic() < self._grant.renew_at

    def token(self) -> str:
        with self._lock:
            now = time.monotonic()
            grant = self._grant
            if grant is not None and now < grant.renew_at:
                return grant.token
            if grant is None or now >= grant.spent_at:
                self._grant = self._obtain(wait=True)  # callers wait for this one
                return self._grant.token
            if self._renewing or now < self._renew_again:
                return grant.token  # still good: another thread renews it, or will soon
            self._renewing = True
        try:
            fresh = self._obtain(wait=False)
        except (JobError, Busy):
            with self._lock:
                self._renewing = False
                self._renew_again = time.monotonic() + min(RENEW_RETRY, grant.spent_at - now)
                if self._grant is None:  # the engine rejected it meanwhile: wait for one
                    self._grant = self._obtain(wait=True)
                return self._grant.token
        with self._lock:
            self._renewing = False
            self._grant = fresh
            return fresh.token

    def _obtain(self, wait: bool) -> _Grant:
        """A new grant: from the shared cache, else from the token endpoint."""
        with self._lock:
            if self._refusal is not None and time.monotonic() < self._refused_until:
                raise self._still_refused()
        try:
            fetched = self._shared_or_fetched(wait)
        except (AuthenticationError, PermanentError) as exc:
            if exc.http_status is not None and 400 <= exc.http_status < 500:
                self._refused(exc)
            raise
        with self._lock:
            self._refusals, self._refusal = 0, None
        now = time.monotonic()
        renew_at = now + fetched.fresh_for
        return _Grant(fetched.access_token, renew_at,
                      renew_at + max(0.0, fetched.margin - min(SKEW, fetched.margin / 2)))

    def _shared_or_fetched(self, wait: bool) -> SharedToken:
        if self._shared is not None:
            try:
                return self._shared.fetch_once(self._fetched, self._timeout + 1 if wait else None)
            except redis.RedisError as exc:
                log.warning("oauth.shared_cache_unavailable", error=type(exc).__name__)
        return self._fetched()

    def _fetched(self) -> SharedToken:
        token, lifetime = self._fetch()
        margin = min(self._config.refresh_margin, lifetime / 2)
        return SharedToken(token, lifetime - margin, margin)

    def _refused(self, exc: JobError) -> None:
        with self._lock:
            self._refusals += 1
            pause = min(REFUSED_MAX, REFUSED_FIRST * 2 ** (self._refusals - 1))
            self._refusal, self._refused_until = exc, time.monotonic() + pause

    def _still_refused(self) -> JobError:
        refusal = self._refusal
        assert refusal is not None
        left = self._refused_until - time.monotonic()
        return type(refusal)(
            f"{refusal.message} (not asked again for {left:.0f} s after the refusal)",
            http_status=refusal.http_status,
            engine_error=refusal.engine_error,
        )

    def _form(self) -> dict[str, str]:
        cfg = self._config
        form = {"grant_type": cfg.grant, "client_id": cfg.client_id}
        if cfg.client_secret is not None:
            form["client_secret"] = cfg.client_secret.get_secret_value()
        if cfg.grant == "password":
            assert cfg.username is not None and cfg.password is not None
            form["username"] = cfg.username
            form["password"] = cfg.password.get_secret_value()
        if cfg.audience:
            form["audience"] = cfg.audience
        if cfg.scope:
            form["scope"] = cfg.scope
        return form

    def _redact(self, body: Any) -> Any:
        """Blank out our own secrets if a token endpoint echoes them back."""
        if not isinstance(body, dict):
            return body
        secrets = [
            s.get_secret_value()
            for s in (self._config.client_secret, self._config.password)
            if s is not None and s.get_secret_value()
        ]
        out = {}
        for name, value in body.items():
            text = str(value)
            for secret in secrets:
                text = text.replace(secret, "***")
            out[name] = text
        return out

    def _fetch(self) -> tuple[str, float]:
        url = self._config.token_url
        self.fetch_count += 1
        try:
            response = self._session.post(
                url,
                data=self._form(),
                timeout=self._timeout,
                headers={"Accept": "application/json"},
            )
        except requests.RequestException as exc:
            refused = tls_refusal(exc)
            if refused is not None:  # a certificate problem: no retry fixes it
                raise PermanentError(f"token endpoint: {refused}") from None
            raise TransientError(f"token endpoint unreachable: {type(exc).__name__}") from None
        body = _json_or_none(response)
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(
                f"token endpoint answered {response.status_code}", http_status=response.status_code
            )
        if response.status_code >= 400:
            body = self._redact(_public_error(body))
            code = body.get("error") if isinstance(body, dict) else None
            described = body.get("error_description") if isinstance(body, dict) else None
            message = f"token endpoint rejected the credentials: {code or response.status_code}"
            if described:
                message += f" ({described})"
            error_cls = (
                AuthenticationError
                if code in _PERMANENT_OAUTH_ERRORS or not code
                else (PermanentError)
            )
            raise error_cls(message, http_status=response.status_code, engine_error=body)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise PermanentError("token endpoint answered without an access_token")
        lifetime = body.get("expires_in", DEFAULT_TOKEN_LIFETIME)
        try:
            seconds = float(lifetime)
        except (TypeError, ValueError):
            seconds = DEFAULT_TOKEN_LIFETIME
        return token, max(seconds, 1.0)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _public_error(body: Any) -> Any:
    """Keep only the RFC 6749 error fields: a token endpoint may echo what we sent."""
    if isinstance(body, dict):
        return {k: body[k] for k in ("error", "error_description") if k in body}
    return None


def credentials_for(
    config: Auth, session: requests.Session, timeout: float, client: redis.Redis | None = None
) -> Credentials:
    """The provider for a target's ``auth`` block (``client``: Redis, for a shared token)."""
    if isinstance(config, BasicAuth):
        return Basic(config)
    if isinstance(config, BearerAuth):
        return Bearer(config)
    if isinstance(config, OAuth2Auth):
        shared = None
        if config.token_cache == "redis" and client is not None:
            shared = SharedTokens(client, client_identity(config))
        return OAuth2(config, session, timeout, shared)
    return Credentials()


def client_identity(config: OAuth2Auth) -> str:
    """Who a token is for: the same identity shares one token (no secret in it)."""
    parts = [config.token_url, config.client_id, config.audience, config.scope, config.grant,
             config.username]
    return json.dumps(parts)
