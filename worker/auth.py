"""Credentials for engine calls: none, basic, bearer and cached OAuth2 tokens.

Providers are `requests.auth.AuthBase`, so an engine passes one to the
injected session and never touches a secret itself. One provider exists per
target per process and is shared by all worker threads: the OAuth2 token is
fetched once, reused until shortly before it expires, and dropped when the
engine answers 401 so the one retry gets a fresh one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from worker.config import Auth, BasicAuth, BearerAuth, OAuth2Auth
from worker.errors import AuthenticationError, PermanentError, TransientError
from worker.http import tls_refusal

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


class Credentials(AuthBase):
    """Base provider: adds nothing. ``refreshable`` says whether a 401 is worth one retry."""

    refreshable = False

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request

    @property
    def ready(self) -> bool:
        """Whether applying the credentials now needs no network call (no token to fetch)."""
        return True

    def invalidate(self) -> None:
        """Forget cached credentials after the engine rejected them."""

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


class OAuth2(Credentials):
    """Client-credentials or password grant, token cached across threads."""

    refreshable = True

    def __init__(self, config: OAuth2Auth, session: requests.Session, timeout: float) -> None:
        self._config = config
        self._session = session
        self._timeout = timeout
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetch_count = 0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        return request

    def invalidate(self) -> None:
        with self._lock:
            self._token = None
            self._expires_at = 0.0

    @property
    def ready(self) -> bool:
        with self._lock:
            return self._token is not None and time.monotonic() < self._expires_at

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                self._token, lifetime = self._fetch()
                margin = min(self._config.refresh_margin, lifetime / 2)
                self._expires_at = time.monotonic() + lifetime - margin
            return self._token

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


def credentials_for(config: Auth, session: requests.Session, timeout: float) -> Credentials:
    """The provider for a target's ``auth`` block."""
    if isinstance(config, BasicAuth):
        return Basic(config)
    if isinstance(config, BearerAuth):
        return Bearer(config)
    if isinstance(config, OAuth2Auth):
        return OAuth2(config, session, timeout)
    return Credentials()
