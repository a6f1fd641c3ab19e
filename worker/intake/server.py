"""Running the intake on uvicorn, on a socket bound before the server starts.

Binding first means the real address is known before serving -- ``--port 0``
asks the kernel for a free port, and ``startproc serve --json`` prints the
URL a script or test then uses -- with no window in which another process
could take the port between choosing and binding it.
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6, whatever ``host`` resolves to)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def server_for(app: FastAPI, log_level: str = "info") -> uvicorn.Server:
    """A uvicorn server for ``app``; run it with ``server.run(sockets=[bind(...)])``.

    ``log_config=None``: uvicorn keeps its hands off logging, so its lines (start-up,
    one per request) go through the process' handlers, formatted as
    ``STARTPROC_LOG_FORMAT`` says like every other line (`worker.logs`).
    """
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)
