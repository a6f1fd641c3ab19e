"""Bearer-token authentication of the intake (and the console's sign-in).

Tokens come from ``STARTPROC_INTAKE_TOKENS`` (comma-separated, so an old and
a new token can be valid together during a rotation). A presented token is
compared with **every** configured token using `hmac.compare_digest`, and the
loop never stops early, so neither the position of the matching token nor
how much of a token matched shows in the response time.

An entry is either a bare token (full access, as before) or
``NAME:TOKEN:ROLE`` with ROLE ``rw`` (operator) or ``ro`` (viewer): a viewer
may read (GET) but not enqueue, replay, resolve or delete anything. NAME is
what the console and the logs show instead of the token.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from worker.intake.problems import ProblemError

REALM = 'Bearer realm="startproc"'
SHORT_TOKEN = 16
SCHEME = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A token of STARTPROC_INTAKE_TOKENS: `Authorization: Bearer <token>`.",
)


ROLES = {"rw": "operator", "ro": "viewer"}
_NAMED = re.compile(r"^(?P<name>[A-Za-z0-9_.-]{1,64}):(?P<token>.+):(?P<role>rw|ro)$")
READ_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Token:
    """One entry of ``STARTPROC_INTAKE_TOKENS``: a name to show, the secret, read-only or not."""

    name: str
    secret: bytes
    read_only: bool = False

    @property
    def role(self) -> str:
        return ROLES["ro" if self.read_only else "rw"]

    def __repr__(self) -> str:  # never the secret
        return f"Token({self.name!r}, {self.role})"


def parse_entries(raw: SecretStr | None) -> tuple[Token, ...]:
    """Every entry; a bare token is named ``token-N`` (its position) and may do everything."""
    if raw is None:
        return ()
    parts = [part.strip() for part in raw.get_secret_value().split(",")]
    entries = []
    for position, part in enumerate((p for p in parts if p), start=1):
        named = _NAMED.match(part)
        if named:
            secret = named["token"].encode("utf-8")
            entries.append(Token(named["name"], secret, named["role"] == "ro"))
        else:
            entries.append(Token(f"token-{position}", part.encode("utf-8")))
    return tuple(entries)


def parse_tokens(raw: SecretStr | None) -> tuple[bytes, ...]:
    """The configured secrets as bytes (compare_digest on str accepts ASCII only)."""
    return tuple(entry.secret for entry in parse_entries(raw))


def find_token(given: str, entries: tuple[Token, ...]) -> Token | None:
    """The entry ``given`` is the secret of; constant-time against each, always against all."""
    presented = given.encode("utf-8")
    found = None
    for entry in entries:
        if hmac.compare_digest(presented, entry.secret):
            found = entry
    return found


def token_matches(given: str, tokens: tuple[bytes, ...]) -> bool:
    """Constant-time against each token, and always against all of them."""
    presented = given.encode("utf-8")
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented, token)
    return matched


class BearerAuth:
    """A FastAPI dependency: 401 problem unless the request carries a configured token.

    Built on `HTTPBearer` so the OpenAPI document declares the bearer scheme
    (and clients generated from it send the header) without exposing an
    ``Authorization`` parameter of its own.
    """

    def __init__(self, tokens: tuple[Token, ...], required: bool) -> None:
        self.tokens = tokens
        self.required = required or bool(tokens)

    async def __call__(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(SCHEME)],
    ) -> None:
        if not self.required:
            return
        if credentials is None:
            raise ProblemError(
                401,
                "unauthorized",
                "Unauthorized",
                "send 'Authorization: Bearer <token>' (a token of STARTPROC_INTAKE_TOKENS)",
                headers={"WWW-Authenticate": REALM},
            )
        token = find_token(credentials.credentials, self.tokens)
        if token is None:
            raise ProblemError(
                401,
                "unauthorized",
                "Unauthorized",
                "the bearer token is not valid",
                headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
            )
        if token.read_only and request.method not in READ_METHODS:
            raise ProblemError(
                403,
                "forbidden",
                "Forbidden",
                f"token {token.name!r} is read-only (role viewer): it may only read",
            )
