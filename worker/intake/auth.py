"""Bearer-token authentication of the intake.

Tokens come from ``STARTPROC_INTAKE_TOKENS`` (comma-separated, so an old and
a new token can be valid together during a rotation). A presented token is
compared with **every** configured token using `hmac.compare_digest`, and the
loop never stops early, so neither the position of the matching token nor
how much of a token matched shows in the response time.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Security
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


def parse_tokens(raw: SecretStr | None) -> tuple[bytes, ...]:
    """The configured tokens as bytes (compare_digest on str accepts ASCII only)."""
    if raw is None:
        return ()
    parts = (part.strip() for part in raw.get_secret_value().split(","))
    return tuple(part.encode("utf-8") for part in parts if part)


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

    def __init__(self, tokens: tuple[bytes, ...], required: bool) -> None:
        self.tokens = tokens
        self.required = required or bool(tokens)

    async def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(SCHEME)]
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
        if not token_matches(credentials.credentials, self.tokens):
            raise ProblemError(
                401,
                "unauthorized",
                "Unauthorized",
                "the bearer token is not valid",
                headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
            )
