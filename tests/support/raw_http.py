"""Raw-socket servers on 127.0.0.1 for tests that need a misbehaving peer.

The transport tests observe what reaches the wire (connections opened, bytes
sent, a hang-up at a chosen moment), which an HTTP server library would hide
or tidy up. `LoopbackServer` is their shared accept loop, so each server only
says how it answers one connection; the HTTP failures both engine test
modules provoke (a hang-up, a trickle, a cut answer) are defined here once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Self


class LoopbackServer:
    """Accepts TCP connections on 127.0.0.1 in a daemon thread, `handle` each in its own.

    ``accepted`` counts connections (so "tried once" is seen on the wire);
    ``url`` is ``scheme://127.0.0.1:port`` plus ``path``. A handler that must
    leave its connection open (the client's read then times out) passes it to
    `hold`; held connections are closed by `stop`.
    """

    scheme = "http"
    path = ""

    def __init__(self) -> None:
        self.accepted = 0
        self.held: list[socket.socket] = []
        self._held_lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, name=type(self).__name__, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{self.path}"

    def handle(self, conn: socket.socket) -> None:
        """Answer one connection (on its own thread); the default hangs up at once."""
        conn.close()

    def hold(self, conn: socket.socket) -> None:
        """Keep ``conn`` open until `stop`."""
        with self._held_lock:
            self.held.append(conn)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop accepting (shutdown wakes the blocked ``accept``), close held connections."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        with self._held_lock:
            for conn in self.held:
                with contextlib.suppress(OSError):
                    conn.close()
        self.thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()


def read_head(conn: socket.socket) -> bytes:
    """The bytes up to and including a request head's blank line (less if the client hangs up)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


class HangUpServer(LoopbackServer):
    """Reads each request head and hangs up (or, with ``answer``, holds the connection open)."""

    path = "/v2/process-instances"

    def __init__(self, answer: bool = False) -> None:
        super().__init__()
        self.answer = answer

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError):
            read_head(conn)
        self.hang_up(conn)

    def hang_up(self, conn: socket.socket) -> None:
        """Close ``conn``, or with ``answer`` keep it open: the client's read times out."""
        if self.answer:
            self.hold(conn)
        else:
            conn.close()


class TrickleServer(HangUpServer):
    """Answers every request a byte per ``interval``: no read waits long, the answer does."""

    ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}'

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval

    def handle(self, conn: socket.socket) -> None:
        self.hold(conn)
        with contextlib.suppress(OSError):
            read_head(conn)
            for index in range(len(self.ANSWER)):
                time.sleep(self.interval)
                conn.sendall(self.ANSWER[index : index + 1])


class CutAnswerServer(HangUpServer):
    """Answers the head of a 100-byte body and 10 bytes of it, then hangs up (or holds on)."""

    def handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            read_head(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        self.hang_up(conn)
