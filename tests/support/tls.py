"""A TLS server on 127.0.0.1 that breaks at a chosen moment, for transport-error tests.

``localhost.pem`` beside this file is a self-signed certificate for
127.0.0.1/localhost and its private key, made for these tests only and
protecting nothing (``openssl req -x509 -newkey ec -pkeyopt
ec_paramgen_curve:prime256v1 -nodes -days 36500 -subj /CN=localhost -addext
subjectAltName=IP:127.0.0.1,DNS:localhost``). A client that should trust the
server uses the same file as its CA bundle (``CA_FILE``).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from pathlib import Path
from typing import Literal

from tests.support.raw_http import LoopbackServer, read_head

CA_FILE = str(Path(__file__).with_name("localhost.pem"))
Mode = Literal["not_tls", "handshake_only", "corrupt_answer"]


class BrokenTLSServer(LoopbackServer):
    """Serves one way of failing to every connection.

    * ``not_tls``: answers the client's hello with plain HTTP (the handshake fails);
    * ``handshake_only``: offers the test certificate (a client that does not
      trust it fails the handshake), reads nothing;
    * ``corrupt_answer``: completes the handshake, reads the whole request head,
      then answers with a TLS record that cannot be decrypted.

    ``requests_read`` counts request heads that reached the server.
    """

    scheme = "https"
    path = "/v2/process-instances"

    def __init__(self, mode: Mode) -> None:
        super().__init__()
        self.mode = mode
        self.requests_read = 0
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(CA_FILE)

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError), conn:
            self._fail(conn)

    def _fail(self, conn: socket.socket) -> None:
        if self.mode == "not_tls":
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        tls = self._context.wrap_socket(conn, server_side=True)  # raises if the client quits
        if self.mode == "handshake_only":
            return
        if not _read_request(tls):
            return
        self.requests_read += 1
        raw = socket.socket(fileno=tls.detach())  # below TLS: write bytes no key can open
        with raw:
            raw.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
            while raw.recv(65536):  # until the client hangs up: closing first could reset
                pass  # the connection and discard the record before the client reads it


def _read_request(tls: ssl.SSLSocket) -> bool:
    """Read one whole request (head and ``Content-Length`` body); False if the client left."""
    data = read_head(tls)
    if b"\r\n\r\n" not in data:
        return False
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = tls.recv(65536)
        if not chunk:
            return False
        body += chunk
    return True
