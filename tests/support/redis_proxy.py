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
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit


class ReplyDropper:
    """Forwards bytes both ways; `drop_reply_to` makes it swallow one reply.

    Armed with a marker (bytes the command contains, e.g. a script's SHA1),
    it forwards that command to Redis, lets Redis run it and answer, throws
    the answer away and stays silent on that connection, so the client times
    out *after* the command ran. ``dropped`` is set when the answer arrived;
    ``dropped_reply`` holds it (to check the command really ran).
    """

    def __init__(self, upstream_url: str) -> None:
        self.upstream = urlsplit(upstream_url)
        self.dropped = threading.Event()
        self.dropped_reply = b""
        self._marker: bytes | None = None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]

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

    def __enter__(self) -> ReplyDropper:
        threading.Thread(target=self._accept, name="reply-dropper", daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            host, port = self.upstream.hostname or "127.0.0.1", self.upstream.port or 6379
            server = socket.create_connection((host, port))
            with self._lock:
                self._sockets += [client, server]
            silenced = threading.Event()
            threading.Thread(
                target=self._requests, args=(client, server, silenced), daemon=True
            ).start()
            threading.Thread(
                target=self._replies, args=(server, client, silenced), daemon=True
            ).start()

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
