"""HTTP plumbing the emulators share: JSON responses, body parsing, rejections, drops.

Handlers raise :class:`Reject` instead of building error bodies themselves, so
each engine formats its own errors in exactly one place
(``EngineApp.error_response``).
"""

from __future__ import annotations

import contextlib
import json
import socket
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

JsonDict = dict[str, Any]

TRICKLE_ENVIRON = "startproc.sandbox.trickle_s"
"""Set in a request's WSGI environ by an emulator: the server then writes the whole
response (status line, headers, body) one byte per that many seconds."""


class Reject(Exception):
    """Abort a handler with an engine error: status, message and engine extras."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class BodyError(ValueError):
    """The request body is not the JSON the handler needs."""


def json_response(
    body: Any,
    status: int = 200,
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Response:
    """Serialize ``body`` compactly, as the engines do."""
    return Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        content_type=content_type,
        headers=headers,
    )


def read_json(request: Request, *, empty: Any = None) -> Any:
    """Parse the body as JSON whatever the Content-Type; ``empty`` when there is none."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return empty
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BodyError(f"malformed JSON: {exc}") from exc


def read_json_object(request: Request, *, empty: JsonDict | None = None) -> JsonDict:
    """Parse the body as a JSON object (``BodyError`` for anything else)."""
    value = read_json(request, empty=empty)
    if not isinstance(value, dict):
        raise BodyError("the body must be a JSON object")
    return value


def drop_connection(request: Request) -> Response:
    """Close the client's socket without sending a byte of the response.

    The socket is shut down in both directions; the server's attempt to write
    the returned (never delivered) response then fails, and it ends the
    connection. The client's pool does not retry on its own (urllib3 retries
    are off in `worker.engines.http`), so a ``requests`` client sees
    ``ConnectionError`` ("Remote end closed connection without response").
    """
    request.get_data(cache=True)  # unread input would turn the FIN into a RST
    sock = request.environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        raise RuntimeError("dropping a connection needs werkzeug's development server")
    with contextlib.suppress(OSError):  # the client went away first: dropped already
        sock.shutdown(socket.SHUT_RDWR)
    return Response(status=500)


def utc_now() -> datetime:
    """The current time, timezone-aware (one place so formats stay consistent)."""
    return datetime.now(UTC)


def iso_millis(moment: datetime) -> str:
    """``2026-01-02T03:04:05.000Z``: the ISO form C8 and the instance records use."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def java_date(moment: datetime) -> str:
    """``yyyy-MM-dd'T'HH:mm:ss.SSSZ`` (``2026-01-02T03:04:05.000+0000``), Camunda 7's format."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}" + \
        moment.strftime("%z")


def is_int(value: Any) -> bool:
    """A JSON integer (``bool`` is an ``int`` in Python but not in JSON)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A JSON number, integer or not."""
    return is_int(value) or isinstance(value, float)
