"""Authentication an engine emulator enforces: none, basic, bearer or OAuth2.

OAuth2 tokens are issued by the engine's ``/oauth/token`` route (client
credentials, or the password grant when a username is configured) and live
``token_ttl`` seconds; ``expire_tokens()`` invalidates every issued token at
once so a worker's refresh-and-retry on 401 can be tested deterministically.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Literal

from werkzeug.wrappers import Request

from worker.local.sandbox.web import JsonDict

AuthType = Literal["none", "basic", "bearer", "oauth2"]
_AUTH_TYPES = ("none", "basic", "bearer", "oauth2")


@dataclass(frozen=True)
class AuthSettings:
    """What ``SandboxAuth.configure`` set; secrets included (the sandbox is a test tool)."""

    type: AuthType = "none"
    username: str | None = None
    password: str | None = None
    token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    audience: str | None = None
    token_ttl: int = 300
    require_on_behalf_of: bool = False
    scope: str | None = None


class TokenError(Exception):
    """A token request the OAuth2 endpoint refuses: RFC 6749 error code and status."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> JsonDict:
        return {"error": self.error, "error_description": self.description}


class SandboxAuth:
    """Checks credentials on API requests and issues OAuth2 tokens. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings = AuthSettings()
        self._tokens: dict[str, float] = {}

    def configure(
        self,
        type: AuthType = "none",
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        audience: str | None = None,
        token_ttl: int = 300,
        require_on_behalf_of: bool = False,
        scope: str | None = None,
    ) -> AuthSettings:
        """Replace the auth scheme; previously issued tokens become invalid.

        basic needs username/password, bearer a token, oauth2 client_id and
        client_secret (plus username/password to allow the password grant).
        ``require_on_behalf_of`` is Blueworks' Service ID mode. ``scope``
        (space-separated, as Entra ID and Keycloak check it): a token request
        must ask for all of them (400 ``invalid_scope`` otherwise).
        """
        if type not in _AUTH_TYPES:
            raise ValueError(f"auth type must be one of {_AUTH_TYPES}, not {type!r}")
        required = {"basic": ("username", "password"), "bearer": ("token",),
                    "oauth2": ("client_id", "client_secret")}.get(type, ())
        given = {"username": username, "password": password, "token": token,
                 "client_id": client_id, "client_secret": client_secret}
        missing = [name for name in required if not given[name]]
        if missing:
            raise ValueError(f"auth type {type!r} needs {', '.join(missing)}")
        settings = AuthSettings(type, username, password, token, client_id, client_secret,
                                audience, token_ttl, require_on_behalf_of, scope)
        with self._lock:
            self._settings = settings
            self._tokens.clear()
        return settings

    @property
    def settings(self) -> AuthSettings:
        with self._lock:
            return self._settings

    def expire_tokens(self) -> int:
        """Invalidate every issued token; returns how many there were."""
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
            return count

    def reset(self) -> None:
        self.configure("none")

    def is_authorized(self, request: Request) -> bool:
        """Whether the request carries credentials the configured scheme accepts."""
        settings = self.settings
        if settings.type == "none":
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        credentials = credentials.strip()
        if settings.type == "basic":
            return scheme.lower() == "basic" and _basic_matches(
                credentials, settings.username, settings.password)
        if scheme.lower() != "bearer" or not credentials:
            return False
        if settings.type == "bearer":
            return _same(credentials, settings.token)
        return self._token_valid(credentials)

    def _token_valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
            if expiry is None:
                return False
            if expiry <= time.monotonic():
                del self._tokens[token]
                return False
            return True

    def issue_token(self, request: Request) -> JsonDict:
        """Handle a token request (form or JSON body); TokenError when refused."""
        settings = self.settings
        params = _token_params(request)
        grant = params.get("grant_type", "")
        if settings.type == "basic" or settings.type == "bearer":
            raise TokenError(400, "unauthorized_client", "this server does not issue tokens")
        if grant not in ("client_credentials", "password"):
            raise TokenError(400, "unsupported_grant_type", f"grant_type {grant!r} not supported")
        if settings.type == "oauth2":
            _check_client(settings, params)
            if grant == "password":
                _check_user(settings, params)
            if settings.audience and params.get("audience") not in (None, settings.audience):
                raise TokenError(400, "invalid_request", "unknown audience")
            if settings.scope and not set(settings.scope.split()) <= set(
                    params.get("scope", "").split()):
                raise TokenError(400, "invalid_scope", f"the scope must include "
                                                       f"{settings.scope!r}")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.monotonic() + settings.token_ttl
        answer: JsonDict = {"access_token": token, "token_type": "Bearer",
                            "expires_in": settings.token_ttl}
        if settings.scope:
            answer["scope"] = settings.scope
        return answer


def _basic_matches(credentials: str, username: str | None, password: str | None) -> bool:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, _, secret = decoded.partition(":")
    return _same(user, username) and _same(secret, password)


def _same(given: str, expected: str | None) -> bool:
    """Constant-time comparison that also copes with non-ASCII input."""
    return expected is not None and secrets.compare_digest(given.encode(), expected.encode())


def _token_params(request: Request) -> dict[str, str]:
    """Token request parameters from a form, a JSON body or HTTP Basic client auth."""
    params: dict[str, str] = {key: str(value) for key, value in request.form.items()}
    if not params and request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            params = {key: str(value) for key, value in body.items()}
    if request.authorization is not None and request.authorization.type == "basic":
        params.setdefault("client_id", request.authorization.username or "")
        params.setdefault("client_secret", request.authorization.password or "")
    return params


def _check_client(settings: AuthSettings, params: dict[str, str]) -> None:
    if not (_same(params.get("client_id", ""), settings.client_id)
            and _same(params.get("client_secret", ""), settings.client_secret)):
        raise TokenError(401, "invalid_client", "Client authentication failed")


def _check_user(settings: AuthSettings, params: dict[str, str]) -> None:
    if not (_same(params.get("username", ""), settings.username)
            and _same(params.get("password", ""), settings.password)):
        raise TokenError(400, "invalid_grant", "The user credentials were incorrect.")
