"""Helpers of the intake tests: a uvicorn server in a thread, the pipeline's exporter, waiting."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

import httpx
import uvicorn

from tests.integration.conftest import Pipeline
from tests.support.waiting import wait_until
from worker.intake.server import bind, server_for, url_of

TOKEN = "intake-test-token-0123456789abcdef"
OTHER_TOKEN = "rotated-token-fedcba9876543210"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def metrics_url(pipeline: Pipeline) -> str:
    """The worker exporter's base URL (``STARTPROC_METRICS_PORT`` of the pipeline)."""
    return f"http://127.0.0.1:{pipeline.env['STARTPROC_METRICS_PORT']}"


@dataclass
class RunningServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


def start_server(app: object) -> RunningServer:
    sock = bind("127.0.0.1", 0)
    server = server_for(app, "warning")  # type: ignore[arg-type]
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="intake", daemon=True
    )
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 15, "uvicorn to start")
    assert server.started, "uvicorn did not start"
    return RunningServer(url_of(sock), server, thread)


def stop_server(running: RunningServer) -> None:
    running.server.should_exit = True
    running.thread.join(timeout=15)
