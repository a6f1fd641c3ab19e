"""HTTPS for the sandbox: each connection's TLS handshake in its own handler thread.

werkzeug's own TLS wraps the listening socket, so every handshake runs in the
accept loop, and a refused handshake (a client without the certificate the
server requires) just closes the socket: with TLS 1.3 the client learns of
the refusal only when it reads its answer, and a close with its request still
unread turns into a reset that usually swallows the server's alert. Real
servers linger instead. Here the handshake happens in the connection's
thread, and a refused one ends with a lingering close (shut down writing,
read what the client sent, then close), so the client reliably gets the
alert that says why (``certificate required``, ``unknown ca``, ...).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import Any

from worker.local.sandbox.keepalive import KeepAliveHandler

HANDSHAKE_TIMEOUT = 5.0
LINGER_SECONDS = 1.0


class TlsHandler(KeepAliveHandler):
    """`KeepAliveHandler` behind a server-side TLS handshake (``server.tls_context``)."""

    refused = False

    def setup(self) -> None:
        context: ssl.SSLContext = self.server.tls_context  # type: ignore[attr-defined]
        tls = context.wrap_socket(self.request, server_side=True, do_handshake_on_connect=False)
        tls.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError):
            self.refused = True
            _linger_close(tls)
            return
        self.request = tls
        super().setup()

    def handle(self) -> None:
        if not self.refused:
            super().handle()

    def finish(self) -> None:
        if not self.refused:
            super().finish()


def _linger_close(tls: ssl.SSLSocket) -> None:
    """Let the alert reach the client before the socket goes (no reset over unread data)."""
    with contextlib.suppress(OSError):
        tls.shutdown(socket.SHUT_WR)
        tls.settimeout(LINGER_SECONDS)
        while tls.recv(4096):
            pass
    with contextlib.suppress(OSError):
        tls.close()


def tls_handler(base: type[KeepAliveHandler]) -> type[KeepAliveHandler]:
    """``base`` (a `handler_for` class, tracking its server's connections) with TLS."""
    attributes: dict[str, Any] = {"connections": base.connections, "quiet": base.quiet}
    return type("SandboxTlsHandler", (TlsHandler,), attributes)
