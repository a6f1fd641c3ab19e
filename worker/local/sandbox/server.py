"""``SandboxServer``: one werkzeug HTTP server in a background thread, serving engine emulators.

With one engine it is served at the root; with several, each under
``/{engine}``. ``base_url(engine)`` is what a target's ``base_url`` must be::

    with SandboxServer("camunda8") as sandbox:
        requests.post(sandbox.base_url("camunda8") + "/v2/process-instances", json=...)

With ``ssl_context`` (a server-side `ssl.SSLContext`, e.g. requiring client
certificates) it serves HTTPS, each handshake in its connection's thread
(`worker.local.sandbox.tls`).
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Response

from worker.local.sandbox.base import EngineApp
from worker.local.sandbox.blueworks import BlueworksApp
from worker.local.sandbox.camunda7 import Camunda7App
from worker.local.sandbox.camunda8 import Camunda8App
from worker.local.sandbox.keepalive import close_all, handler_for
from worker.local.sandbox.processmaker4 import ProcessMaker4App
from worker.local.sandbox.tas import TasApp
from worker.local.sandbox.tls import tls_handler

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ENGINE_NAMES = ("camunda8", "camunda7", "processmaker4", "blueworks", "tas")
EngineName = Literal["camunda8", "camunda7", "processmaker4", "blueworks", "tas"]


def _not_found(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    response = Response('{"error":"no sandbox engine here; paths start with /{engine}"}',
                        status=404, content_type="application/json")
    return response(environ, start_response)


class SandboxServer:
    """Engine emulators on a real HTTP server (``port=0`` picks a free port)."""

    def __init__(
        self,
        engines: str | Sequence[str] = "all",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        camunda8_api_version: str = "8.8",
        camunda7_product: str = "camunda7",
        camunda7_base_path: str = "/engine-rest",
        ssl_context: ssl.SSLContext | None = None,
        quiet: bool = True,
    ) -> None:
        """``camunda7_product``/``camunda7_base_path``: serve the Camunda 7 API as one of its
        forks (``operaton``, ``cibseven``) and/or under another path."""
        names = _engine_names(engines)
        self._apps: dict[str, EngineApp] = {}
        for name in names:
            if name == "camunda7":
                self._apps[name] = Camunda7App(camunda7_base_path, camunda7_product)
            else:
                self._apps[name] = _make_app(name, camunda8_api_version)
        self._single = len(names) == 1
        self._ssl_context = ssl_context
        self._host = host
        self._requested_port = port
        self._quiet = quiet
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> SandboxServer:
        """Bind, listen and serve in a daemon thread; the port accepts on return."""
        if self._server is not None:
            raise RuntimeError("sandbox server already started")
        handler = handler_for(self._connections, self._quiet)
        if self._ssl_context is not None:
            handler = tls_handler(handler)
        server = make_server(self._host, self._requested_port, self._wsgi_app(), threaded=True,
                             request_handler=handler)
        if self._ssl_context is not None:  # the handler shakes hands; werkzeug says https
            server.tls_context = self._ssl_context  # type: ignore[attr-defined]
            server.ssl_context = self._ssl_context
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"sandbox-{server.server_port}", daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving, join the thread, close the socket (idempotent)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        thread.join()
        close_all(self._connections)  # kept-alive clients must see the engine go away
        server.server_close()
        self._server = self._thread = None

    def wait(self) -> None:
        """Block until the server stops (for ``startproc sandbox``)."""
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> SandboxServer:
        return self.start() if self._server is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("sandbox server not started")
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        """``http(s)://host:port`` of the running server."""
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    @property
    def engines(self) -> tuple[str, ...]:
        return tuple(self._apps)

    def root_url(self, engine: str) -> str:
        """Where an engine's routes start (its ``/_sandbox`` and ``/oauth/token`` live here)."""
        self._require(engine)
        return self.url if self._single else f"{self.url}/{engine}"

    def base_url(self, engine: str) -> str:
        """The ``base_url`` a worker target for ``engine`` must use."""
        return self.root_url(engine) + self._require(engine).base_path

    def token_url(self, engine: str) -> str:
        """The OAuth2 token endpoint (camunda8, processmaker4, blueworks)."""
        if not self._require(engine).issues_tokens:
            raise ValueError(f"{engine} has no token endpoint")
        return self.root_url(engine) + "/oauth/token"

    # -- apps ----------------------------------------------------------------------

    @overload
    def app(self, engine: Literal["camunda8"]) -> Camunda8App: ...
    @overload
    def app(self, engine: Literal["camunda7"]) -> Camunda7App: ...
    @overload
    def app(self, engine: Literal["processmaker4"]) -> ProcessMaker4App: ...
    @overload
    def app(self, engine: Literal["blueworks"]) -> BlueworksApp: ...
    @overload
    def app(self, engine: Literal["tas"]) -> TasApp: ...
    @overload
    def app(self, engine: str) -> EngineApp: ...

    def app(self, engine: str) -> EngineApp:
        """The emulator of ``engine`` (to inspect instances, inject faults, configure auth)."""
        return self._require(engine)

    @property
    def apps(self) -> dict[str, EngineApp]:
        return dict(self._apps)

    def reset(self) -> None:
        """``reset()`` every engine."""
        for app in self._apps.values():
            app.reset()

    def _require(self, engine: str) -> EngineApp:
        try:
            return self._apps[engine]
        except KeyError:
            raise ValueError(f"engine {engine!r} is not served here; serving {self.engines}") \
                from None

    def _wsgi_app(self) -> WSGIApplication:
        if self._single:
            return next(iter(self._apps.values()))
        mounts: dict[str, Any] = {f"/{name}": app for name, app in self._apps.items()}
        return DispatcherMiddleware(_not_found, mounts)


def _engine_names(engines: str | Sequence[str]) -> list[str]:
    if engines == "all":
        return list(ENGINE_NAMES)
    names = [engines] if isinstance(engines, str) else list(engines)
    unknown = [name for name in names if name not in ENGINE_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown engines {unknown}; choose from {ENGINE_NAMES} or 'all'")
    return list(dict.fromkeys(names))


def _make_app(name: str, camunda8_api_version: str) -> EngineApp:
    if name == "camunda8":
        return Camunda8App(api_version=camunda8_api_version)
    classes: dict[str, type[EngineApp]] = {
        "processmaker4": ProcessMaker4App, "blueworks": BlueworksApp, "tas": TasApp}
    return classes[name]()
