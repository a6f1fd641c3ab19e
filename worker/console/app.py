"""The console's ASGI app, mounted by the intake under ``/ui``.

Its own FastAPI instance, so its errors are pages (not problem+json), its
routes stay out of the intake's OpenAPI document, and the intake's bearer
auth does not apply: people sign in with the same tokens through a form
(`worker.console.session`). It produces, like the intake: no Celery import
here; replays, batches and "run now" publish through the same producer code.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import Message, Scope

from worker.config import Settings
from worker.console.batch_runs import BatchRuns
from worker.console.context import (
    Console,
    Refused,
    SignInRequired,
    attach_session,
)
from worker.console.render import ENV, SECURITY_HEADERS, page
from worker.console.session import Sessions
from worker.errors import ConfigError
from worker.intake.context import Intake
from worker.intake.middleware import CrashGuard

log = structlog.get_logger("worker.console")


def install_error_pages(app: FastAPI) -> None:
    async def on_sign_in(request: Request, _exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/login?next={quote(target)}", status_code=303)

    async def on_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return page(request, "error.html", 403, title="Refused", message=exc.reason)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "Error"
        return page(request, "error.html", exc.status_code, title=message, message="")

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()
        )
        return page(request, "error.html", 400, title="Bad request", message=reasons)

    async def on_outage(request: Request, exc: Exception) -> Response:
        reason = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}"
        return page(request, "error.html", 503, title="Redis is unavailable", message=reason[:300])

    app.add_exception_handler(SignInRequired, on_sign_in)
    app.add_exception_handler(Refused, on_refused)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(redis.RedisError, on_outage)
    app.add_exception_handler(ConfigError, on_outage)


class ConsoleGuard(CrashGuard):
    """Security headers on every answer; an unhandled error is a plain 500 page."""

    event = "console.unhandled"

    def logger(self) -> Any:
        return log

    def on_start(self, message: Message) -> Message:
        headers = list(message.get("headers", []))
        names = {name.lower() for name, _ in headers}
        for name, value in SECURITY_HEADERS.items():
            if name.lower().encode() not in names:
                headers.append((name.lower().encode(), value.encode()))
        return {**message, "headers": headers}

    def crash_response(self, scope: Scope) -> Response:
        body = ENV.get_template("crash.html").render(ui=scope.get("root_path", ""))
        return HTMLResponse(body, status_code=500)


def create_console(cfg: Settings, intake: Intake) -> FastAPI:
    """The console app for ``cfg``; the intake mounts it at ``/ui`` when tokens are set."""
    from worker.console import batches, dead_letters, jobs, login, overview, schedules

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    data_dir = cfg.ui_data_dir or Path(tempfile.mkdtemp(prefix="startproc-console-"))
    app.state.console = Console(cfg, intake, Sessions(cfg), BatchRuns(data_dir))
    app.mount("/static", StaticFiles(packages=[("worker.console", "static")]), name="static")
    session = [Depends(attach_session)]
    for module in (login, overview, jobs, batches, dead_letters, schedules):
        router: Any = module.router
        app.include_router(router, dependencies=session)
    install_error_pages(app)
    app.add_middleware(ConsoleGuard)
    return app
