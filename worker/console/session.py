"""Who is signed in: a signed, expiring, HttpOnly, SameSite=Strict cookie, and CSRF tokens.

A person signs in with a token of ``STARTPROC_INTAKE_TOKENS``. The cookie
never holds the token: it holds the entry's name, a keyed fingerprint of its
secret and a random CSRF token, signed with ``STARTPROC_UI_SECRET`` (or a key
derived from the configured tokens when that is unset) and dated, so it
expires after ``STARTPROC_UI_SESSION_SECONDS``. Every request looks the
entry up again by that fingerprint: a token removed from the configuration
signs its sessions out at once, and the role always comes from the
configuration, never from the cookie.

Before sign-in the cookie carries only a CSRF token, so the sign-in form is
protected like every other form (no login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from worker.config import Settings
from worker.intake.auth import Token, find_token, parse_entries

COOKIE = "startproc_console"
PATH = "/ui"
_SALT = "startproc-console-session"
_DERIVE = b"startproc-console-v1"


@dataclass(frozen=True)
class Session:
    """The request's session; ``user`` is None before sign-in."""

    csrf: str
    user: Token | None = None

    @property
    def can_change(self) -> bool:
        """Operators may replay, resolve, delete, start and pause; viewers only look."""
        return self.user is not None and not self.user.read_only


def secret_key(cfg: Settings, tokens: tuple[Token, ...]) -> bytes:
    """``STARTPROC_UI_SECRET``, else a key derived from every configured token.

    Derived: several intake processes with the same tokens accept each other's
    cookies, and changing the tokens signs everybody out.
    """
    if cfg.ui_secret is not None and cfg.ui_secret.get_secret_value():
        return cfg.ui_secret.get_secret_value().encode("utf-8")
    joined = b"\0".join(sorted(t.secret for t in tokens))
    return hmac.new(_DERIVE, joined, hashlib.sha256).digest()


class Sessions:
    """Reads and writes the session cookie of one console."""

    def __init__(self, cfg: Settings) -> None:
        self.tokens = parse_entries(cfg.intake_tokens)
        self.key = secret_key(cfg, self.tokens)
        self.max_age = cfg.ui_session_seconds
        self.secure = cfg.ui_cookie_secure
        self._signer = URLSafeTimedSerializer(
            self.key, salt=_SALT, signer_kwargs={"digest_method": hashlib.sha256}
        )

    def fingerprint(self, token: Token) -> str:
        return hmac.new(self.key, token.secret, hashlib.sha256).hexdigest()[:32]

    def load(self, request: Request) -> Session | None:
        """The valid session of the request, or None (absent, forged, expired, token gone)."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data: Any = self._signer.loads(raw, max_age=self.max_age)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        user = None
        if data.get("u") is not None:
            user = self._entry(str(data.get("u")), str(data.get("f", "")))
            if user is None:
                return None
        return Session(data["c"], user)

    def _entry(self, name: str, fingerprint: str) -> Token | None:
        found = None
        for token in self.tokens:
            same = hmac.compare_digest(self.fingerprint(token), fingerprint)
            if same and token.name == name:
                found = token
        return found

    def sign_in(self, given: str) -> Session | None:
        token = find_token(given, self.tokens)
        return Session(secrets.token_urlsafe(24), token) if token else None

    def anonymous(self) -> Session:
        return Session(secrets.token_urlsafe(24))

    def save(self, response: Response, session: Session) -> None:
        data: dict[str, Any] = {"c": session.csrf}
        if session.user is not None:
            data.update(u=session.user.name, f=self.fingerprint(session.user))
        response.set_cookie(
            COOKIE,
            self._signer.dumps(data),
            max_age=self.max_age,
            path=PATH,
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(
            COOKIE, path=PATH, httponly=True, samesite="strict", secure=self.secure
        )


def csrf_ok(session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf, str(given))
