"""The auth blocks of the targets file (``[targets.NAME.auth]``), and the pieces
every table of that file shares: strict models, http(s) URLs.

Kept apart from `worker.config` (which re-exports them) so each stays small.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {value!r}")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    return value.rstrip("/")


class NoAuth(_Strict):
    type: Literal["none"] = "none"


class BasicAuth(_Strict):
    type: Literal["basic"]
    username: Annotated[str, Field(min_length=1)]
    password: SecretStr


class BearerAuth(_Strict):
    type: Literal["bearer"]
    token: SecretStr


class OAuth2Auth(_Strict):
    type: Literal["oauth2"]
    token_url: str
    client_id: Annotated[str, Field(min_length=1)]
    client_secret: SecretStr | None = None
    audience: str | None = None
    scope: str | None = None
    grant: Literal["client_credentials", "password"] = "client_credentials"
    username: str | None = None
    password: SecretStr | None = None
    refresh_margin: Annotated[float, Field(ge=0)] = 30.0
    token_cache: Literal["process", "redis"] = "process"

    @field_validator("token_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)

    @model_validator(mode="after")
    def _grant_fields(self) -> OAuth2Auth:
        if self.grant == "password" and (not self.username or self.password is None):
            raise ValueError("grant 'password' needs username and password")
        if self.grant == "client_credentials" and self.client_secret is None:
            raise ValueError("grant 'client_credentials' needs client_secret")
        return self


Auth = Annotated[NoAuth | BasicAuth | BearerAuth | OAuth2Auth, Field(discriminator="type")]
AUTH_MODELS: dict[str, type[_Strict]] = {
    "none": NoAuth,
    "basic": BasicAuth,
    "bearer": BearerAuth,
    "oauth2": OAuth2Auth,
}
