"""A TCP proxy in front of a real Redis that can lose one reply on purpose.

For the cases a client library hides: a command that reached Redis and ran,
whose answer never came back (a network blip, a failover, a slow server).
redis-py then raises a timeout and, with the worker's retry settings, sends
the same command again; a non-idempotent script must cope with that.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

from tests.support.raw_http import LoopbackServer


class ReplyDropper(LoopbackServer):
    """Forwards bytes both ways; `drop_reply_to` makes it swallow one reply.

    Armed with a marker (bytes the command contains, e.g. a script's SHA1),
    it forwards that command to Redis, lets Redis run it and answer, throws
    the answer away and stays silent on that connection, so the client times
    out *after* the command ran. ``dropped`` is set when the answer arrived;
    ``dropped_reply`` holds it (to check the command really ran).
    """

    def __init__(self, upstream_url: str) -> None:
        super().__init__()
        self.upstream = urlsplit(upstream_url)
        self.dropped = threading.Event()
        self.dropped_reply = b""
        self._marker: bytes | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The upstream URL with the proxy's address instead."""
        netloc = f"127.0.0.1:{self.port}"
        if self.upstream.password:
            netloc = f"{self.upstream.username or ''}:{self.upstream.password}@{netloc}"
        return urlunsplit(self.upstream._replace(netloc=netloc))

    def drop_reply_to(self, marker: bytes) -> None:
        with self._lock:
            self._marker = marker

    def handle(self, conn: socket.socket) -> None:
        """Connect ``conn`` to Redis: requests forwarded here, replies on a second thread."""
        host, port = self.upstream.hostname or "127.0.0.1", self.upstream.port or 6379
        server = socket.create_connection((host, port))
        self.hold(conn)
        self.hold(server)
        silenced = threading.Event()
        threading.Thread(
            target=self._replies, args=(server, conn, silenced), daemon=True
        ).start()
        self._requests(conn, server, silenced)

    def _requests(
        self, client: socket.socket, server: socket.socket, silenced: threading.Event
    ) -> None:
        while data := _recv(client):
            with self._lock:
                if self._marker is not None and self._marker in data:
                    self._marker = None
                    silenced.set()  # before forwarding: the reply cannot overtake it
            server.sendall(data)
        _close(server)

    def _replies(
        self, server: socket.socket, client: socket.socket, silenced: threading.Event
    ) -> None:
        while data := _recv(server):
            if silenced.is_set():
                if not self.dropped.is_set():
                    self.dropped_reply = data
                    self.dropped.set()
                continue
            client.sendall(data)
        _close(client)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
