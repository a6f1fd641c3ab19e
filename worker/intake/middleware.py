"""Two ASGI middlewares that hold for every route: a body size limit and a last-resort 500.

Both are plain ASGI (not ``BaseHTTPMiddleware``) so they see the raw byte
stream: the size limit must count bytes as they arrive -- a chunked upload
has no Content-Length to check -- and must stop reading at the limit rather
than after buffering a gigabyte.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.intake.problems import ProblemError, problem_response

log = structlog.get_logger("worker.intake")


class BodyTooLarge(ProblemError):
    """The request body passed the route's limit (raised from inside ``receive``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            "too-large",
            "Content Too Large",
            f"request body is larger than the {limit} byte limit",
            extra={"limit_bytes": limit},
        )


class BodyLimit:
    """Rejects bodies over ``limit_for(path)`` bytes with 413, before or while reading them.

    A declared Content-Length over the limit is answered at once, without
    reading anything. Otherwise the bytes are counted as the endpoint reads
    them, and the read that crosses the limit raises `BodyTooLarge`, which
    the problem handlers turn into the same 413.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            exc = BodyTooLarge(limit)
            response = problem_response(
                exc.status,
                exc.slug,
                exc.title,
                exc.detail,
                instance=scope["path"],
                extra=exc.extra,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class CrashGuard:
    """Any exception nothing else handled: logged with its traceback, and a 500 of the
    app's own kind (`crash_response`), never a traceback or exception text.

    Plain ASGI, outermost, so it also covers the apps' error handlers. An
    exception after the answer started cannot change it: ``reraise_started``
    says whether it then goes on to the server. `on_start` may add headers.
    """

    event = "unhandled"
    reraise_started = False

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def logger(self) -> Any:
        """Where the traceback goes (this module's logger, looked up when used)."""
        return log

    def on_start(self, message: Message) -> Message:
        return message

    def crash_response(self, scope: Scope) -> Response:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = self.on_start(message)
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            self.logger().exception(self.event, method=scope.get("method"), path=scope.get("path"))
            if started:
                if self.reraise_started:
                    raise
                return
            await self.crash_response(scope)(scope, receive, tracked)


class ProblemGuard(CrashGuard):
    """The intake's crash answer: a 500 problem+json (Starlette's own error middleware
    would answer with plain text and re-raise)."""

    event = "intake.unhandled"
    reraise_started = True

    def crash_response(self, scope: Scope) -> Response:
        return problem_response(
            500,
            "internal",
            "Internal Server Error",
            "the intake failed unexpectedly; the error is in its log",
            instance=scope.get("path"),
        )
