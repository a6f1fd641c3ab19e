"""An OAuth2 provider under test: a token endpoint mocked with ``responses``, a fake clock."""

from __future__ import annotations

from typing import Any

import responses

from worker.engines.auth import OAuth2
from worker.engines.http import make_session
from worker.targets import OAuth2Auth

TOKEN_URL = "http://idp.test/oauth/token"
API = "http://api.test/v2/topology"
SECRET = "cl1ent-S3CRET-value"
PASSWORD = "us3r-PASSW0RD-value"


class Clock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config(**fields: Any) -> OAuth2Auth:
    values: dict[str, Any] = {
        "type": "oauth2",
        "token_url": TOKEN_URL,
        "client_id": "worker",
        "client_secret": SECRET,
        **fields,
    }
    return OAuth2Auth.model_validate(values)


def provider(**fields: Any) -> OAuth2:
    return OAuth2(config(**fields), make_session(), timeout=4.0)


def grant(access_token: str = "t1", expires_in: Any = 300) -> dict[str, Any]:
    return {"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in}


def token_calls() -> list[Any]:
    return [c for c in responses.calls if c.request.url == TOKEN_URL]
