"""RFC 7807 problem details: the one shape of every error the intake returns.

Clients in any language get ``application/problem+json`` with ``type``,
``title``, ``status`` and ``detail`` for every failure -- a bad token, a body
too large, malformed JSON, an invalid job, a route that does not exist, a
broker that is down, or a bug of ours -- and never a traceback or an HTML
page. Validation problems add ``errors``, one entry per field, so a form or a
batch tool can point at the exact job and field.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match

from worker.validation import dotted

PROBLEM_TYPE = "application/problem+json"
TYPE_BASE = "urn:startproc:problem:"
# "variables.x: reason; options: unknown field" -> split before each "path: ".
_NEXT_FIELD = re.compile(r"; (?=[A-Za-z_(][\w.\[\]()-]*: )")
_WHOLE_JOB = {"job", "(job)"}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class FieldError(BaseModel):
    """One invalid field: which job of the request (or line of a batch), which field, why."""

    model_config = ConfigDict(extra="forbid")

    index: int | None = Field(None, description="Position of the job in the request (0-based).")
    line: int | None = Field(None, description="Line of the batch file (header = line 1).")
    field: str = Field(description="Dotted path of the field, e.g. variables.amount; '' = all.")
    message: str


class Problem(BaseModel):
    """An RFC 7807 problem document; ``errors`` is present for validation problems."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI reference naming the kind of problem.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(None, description="The request path.")
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raised anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}


def problem_body(
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    instance: str | None = None,
    errors: list[FieldError] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": f"{TYPE_BASE}{slug}", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = [e.model_dump(exclude_none=True) for e in errors]
    body.update(extra or {})
    return body


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    return JSONResponse(
        problem_body(status, slug, title, detail, instance, errors, extra),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_TYPE,
    )


def job_field_errors(index: int, message: str) -> list[FieldError]:
    """Split `Job.parse`'s ``"field: reason; field: reason"`` message into entries."""
    errors = []
    for part in _NEXT_FIELD.split(message):
        field, sep, reason = part.partition(": ")
        if not sep:
            field, reason = "", part
        errors.append(
            FieldError(index=index, field="" if field in _WHOLE_JOB else field, message=reason)
        )
    return errors


_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
    415: "unsupported-media-type",
    422: "invalid",
    503: "unavailable",
}
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def title_for(status: int) -> str:
    return _TITLES.get(status, "Error")


def _allowed(request: Request) -> str:
    """Every method some route accepts on this path (Starlette names only the first route's)."""
    allowed = [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]
    return ", ".join(allowed)


def _param(loc: tuple[int | str, ...]) -> str:
    """``("query", "target")`` -> ``target``: the parameter, without where it was sent."""
    return dotted(loc[1:]) if len(loc) > 1 else dotted(loc)


def install_handlers(app: FastAPI) -> None:
    """Turn every exception FastAPI/Starlette would render its own way into a problem."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(
            exc.status,
            exc.slug,
            exc.title,
            exc.detail,
            instance=request.url.path,
            errors=exc.errors,
            headers=exc.headers,
            extra=exc.extra,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else None
        headers = dict(exc.headers or {})
        if status == 405:
            headers["Allow"] = _allowed(request)
        return problem_response(
            status,
            _SLUGS.get(status, f"http-{status}"),
            title_for(status),
            detail if detail and detail != title_for(status) else None,
            instance=request.url.path,
            headers=headers,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            FieldError(field=_param(tuple(err["loc"])), message=err["msg"]) for err in exc.errors()
        ]
        return problem_response(
            422,
            "invalid",
            "Invalid request",
            "; ".join(f"{e.field}: {e.message}" for e in errors),
            instance=request.url.path,
            errors=errors,
        )

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
