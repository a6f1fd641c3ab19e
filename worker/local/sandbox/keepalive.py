"""A werkzeug request handler that keeps connections open, as real engines do.

werkzeug's development server answers every request with ``Connection:
close`` (it cannot drain a request body safely otherwise). Against it a
client opens a TCP connection per start, which no production engine makes
it do, so measured client costs would be inflated and a connection pool's
real behaviour (reuse, stale connections) would never be exercised.

This handler reads exactly ``Content-Length`` bytes of each request, so the
next request line is never eaten, and writes each response in one send
(status line, headers and body together: no Nagle / delayed-ACK stall).
Requests with a chunked body are answered and the connection is then closed.
`drop_connection` still works: the emulator shuts the socket down, the
write fails, and the connection ends without a response. A response the
emulator marked with ``TRICKLE_ENVIRON`` is written a byte at a time instead
(a slow network or a stuck proxy, for clients' deadlines).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import IO, Any, ClassVar, cast

from werkzeug.serving import WSGIRequestHandler
from werkzeug.wsgi import LimitedStream

from worker.local.sandbox.web import TRICKLE_ENVIRON

IDLE_TIMEOUT = 120.0
"""Seconds an idle kept-alive connection stays open (then the server closes it, quietly)."""

_NO_BODY = {HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED}


class KeepAliveHandler(WSGIRequestHandler):
    """HTTP/1.1 with persistent connections; open connections are tracked for shutdown."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    quiet: ClassVar[bool] = True
    connections: ClassVar[set[socket.socket]] = set()
    """Replaced per server (see `handler_for`), so a server can close its own on stop."""

    def setup(self) -> None:
        super().setup()
        self.connections.add(self.connection)

    def finish(self) -> None:
        self.connections.discard(self.connection)
        super().finish()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if not self.quiet:
            super().log_request(code, size)

    def log_error(self, format: str, *args: Any) -> None:
        if format.startswith("Request timed out"):
            return  # an idle kept-alive connection reached IDLE_TIMEOUT: routine, not an error
        super().log_error(format, *args)

    def run_wsgi(self) -> None:
        environ = self.make_environ()
        if environ.get("wsgi.input_terminated"):  # a chunked body: no length to stop at
            self.close_connection = True
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            environ["wsgi.input"] = LimitedStream(cast(IO[bytes], self.rfile), length)
        status, headers, body = self._call_app(environ)
        stream = environ["wsgi.input"]
        if isinstance(stream, LimitedStream):
            stream.exhaust()  # whatever the app did not read, so the next request parses
        code = int(status.split(" ", 1)[0])
        if self.command == "HEAD" or code in _NO_BODY or code < 200:
            body = b""
        names = {name.lower() for name, _ in headers}
        if "content-length" not in names and code not in _NO_BODY:
            headers.append(("Content-Length", str(len(body))))
        if self.close_connection:
            headers.append(("Connection", "close"))
        head = "".join(f"{name}: {value}\r\n" for name, value in headers)
        data = f"HTTP/1.1 {status}\r\n{head}\r\n".encode("latin-1") + body
        try:
            self._write(data, environ.get(TRICKLE_ENVIRON))
        except OSError:  # the emulator dropped the connection, or the client went away
            self.close_connection = True
            return
        self.log_request(code, len(body))

    def _write(self, data: bytes, trickle_s: float | None) -> None:
        """The response in one send, or a byte per ``trickle_s`` seconds."""
        if not trickle_s:
            self.wfile.write(data)
            return
        for index in range(len(data)):
            if index:
                time.sleep(trickle_s)
            self.wfile.write(data[index : index + 1])

    def _call_app(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], _: Any = None) -> Any:
            started[:] = [status, list(headers)]
            return lambda data: None  # the legacy write() callable; no emulator uses it

        try:
            chunks: Iterable[bytes] = self.server.app(environ, start_response)
            try:
                body = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        except Exception:
            self.log_error("emulator error on %s %s", self.command, self.path)
            self.close_connection = True
            return "500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")], b"error\n"
        return started[0], started[1], body


def handler_for(connections: set[socket.socket], quiet: bool) -> type[KeepAliveHandler]:
    """A handler class that records its connections in ``connections``."""
    return type(
        "SandboxHandler", (KeepAliveHandler,), {"connections": connections, "quiet": quiet}
    )


def close_all(connections: set[socket.socket]) -> None:
    """End every open connection (the server is stopping: kept-alive clients must notice)."""
    for sock in list(connections):
        with contextlib.suppress(OSError):  # already closed by the client
            sock.shutdown(socket.SHUT_RDWR)
