"""The call deadline: every read of an answer ends by it, and when a request went out.

urllib3's timeouts bound each socket read, not a call: an answer that
trickles in a byte at a time never times out. Inside `call_deadline` every
read of a response (status line, headers, body) waits at most until the
deadline, so a call ends by then and one that runs over is ambiguous. The
connection classes here note in the call's `CallState` when its request
starts to go out (what a later TLS error needs to be classified), and send a
request's head and a small body in one write (`_OneWrite`).
"""

from __future__ import annotations

import http.client
import io
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from time import monotonic
from typing import Any

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection

_call = threading.local()


class CallDeadlineExceeded(TimeoutError):
    """A response was still being read when its call's deadline passed."""


@dataclass
class CallState:
    """How far one call got: ``written`` once its request started to go out."""

    written: bool = False


@contextmanager
def call_deadline(seconds: float, state: CallState | None = None) -> Iterator[None]:
    """Responses read in this block (on an `EngineAdapter`) end ``seconds`` from now;
    ``state`` notes when the request starts to go out."""
    outer, outer_state = getattr(_call, "deadline", None), getattr(_call, "state", None)
    _call.deadline, _call.state = monotonic() + seconds, state
    try:
        yield
    finally:
        _call.deadline, _call.state = outer, outer_state


def _note_written() -> None:
    state = getattr(_call, "state", None)
    if state is not None:
        state.written = True


class _DeadlineReader(io.RawIOBase):
    """A response's socket reader whose every read waits at most until the deadline."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._deadline = deadline
        self._per_read = sock.gettimeout()  # urllib3's read timeout, set before the response

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def readinto(self, buffer: Any) -> int | None:
        left = self._deadline - monotonic()
        if left <= 0:
            raise CallDeadlineExceeded("the call's deadline passed while reading the answer")
        wait = left if self._per_read is None else min(self._per_read, left)
        if wait != self._sock.gettimeout():  # each change is an ioctl that gives up the GIL
            self._sock.settimeout(wait)
        try:
            return self._raw.readinto(buffer)
        except TimeoutError:
            if monotonic() >= self._deadline:
                raise CallDeadlineExceeded(
                    "the call's deadline passed while reading the answer"
                ) from None
            raise

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """http.client's response, read through a `_DeadlineReader` inside `call_deadline`."""

    def __init__(
        self, sock: socket.socket, debuglevel: int = 0, method: str | None = None, url: Any = None
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        deadline = getattr(_call, "deadline", None)
        if deadline is not None:
            self.fp = io.BufferedReader(_DeadlineReader(self.fp.detach(), sock, deadline))


ONE_WRITE_BYTES = 64 * 1024
"""Bodies up to this size go out in one write with the request's head."""


class _OneWrite:
    """A request's head and a small body in one write, not two.

    urllib3 sends the head (``endheaders``) and then the body: two sends,
    each a syscall, a GIL hand-off and, on a TLS socket, a record of its own.
    Here the head is held back until the body's first write and sent with
    it; a request without such a body sends its head as before.
    """

    _held: bytes | None = None
    """While a request with such a body goes out: b"" until the head comes, then the head."""

    def request(self, method: str, url: str, body: Any = None, *args: Any, **kwargs: Any) -> None:
        _note_written()
        if isinstance(body, bytes) and 0 < len(body) <= ONE_WRITE_BYTES:
            self._held = b""
        try:
            super().request(method, url, body, *args, **kwargs)  # type: ignore[misc]
            if self._held:  # no body write came after the head: it goes alone
                super().send(self._held)  # type: ignore[misc]
        finally:
            self._held = None

    def send(self, data: Any) -> None:
        held = self._held
        if held is None or not isinstance(data, bytes):
            super().send(data)  # type: ignore[misc]
        elif not held:
            self._held = data  # the head (http.client's endheaders): held for the body
        else:
            self._held = None
            super().send(held + data)  # type: ignore[misc]


class _HTTPConnection(_OneWrite, HTTPConnection):
    response_class = _DeadlineResponse


class _HTTPSConnection(_OneWrite, HTTPSConnection):
    """Connected (the TLS handshake done) by the pool before `request` is called."""

    response_class = _DeadlineResponse


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


DEADLINE_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}
