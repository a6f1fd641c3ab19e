"""``EngineApp``: the WSGI app every engine emulator is, and what they all share.

A subclass declares its routes, formats its own errors and knows its
deployments; this base class does the rest the same way for all five engines:

* routing (werkzeug ``Map``) and per-route request counters;
* authentication of API routes (``SandboxAuth``) and an OAuth2 token route;
* the start-request pipeline: latency → auth → capacity → fault (scripted,
  else drawn) → handler → optional drop after commit or trickled answer;
  lookup routes (the searches a worker reconciles with) take scripted
  ``"on": "lookup"`` faults the same way;
* the unauthenticated control routes under ``/_sandbox/``::

    GET  /_sandbox/instances      POST /_sandbox/faults   (configure kwargs or {"script": [...]})
    GET  /_sandbox/stats          POST /_sandbox/reset
    GET  /_sandbox/requests       (the last API requests with their traceparent/tracestate)
    POST /_sandbox/expire-tokens  POST /_sandbox/deploy   (deploy kwargs)
    POST /_sandbox/auth           POST /_sandbox/configure (engine options, e.g. C8 api_version)

The building blocks live in small modules and are re-exported here:
``store`` (instances, counters, registries), ``faults``, ``auth``, ``web``
(JSON, ``Reject``, dropping a connection).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from worker.local.sandbox.auth import SandboxAuth, TokenError
from worker.local.sandbox.faults import Fault, FaultKnobs
from worker.local.sandbox.store import InstanceStore, RequestCounters, RequestLog
from worker.local.sandbox.web import (
    TRICKLE_ENVIRON,
    BodyError,
    JsonDict,
    Reject,
    drop_connection,
    iso_millis,
    json_response,
    read_json_object,
    utc_now,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["EngineApp", "FaultKnobs", "InstanceStore", "Reject", "Route", "SandboxAuth",
           "next_version"]

Handler = Callable[[Request, dict[str, Any]], Response]
RouteKind = Literal["start", "lookup", "api", "token", "control"]


@dataclass(frozen=True)
class Route:
    """One HTTP route: ``kind`` decides auth, faults and counting."""

    path: str
    method: str
    handler: Handler
    kind: RouteKind = "api"


class EngineApp:
    """Base WSGI app of an emulated engine (see the module docstring)."""

    name: ClassVar[str] = ""
    base_path: str = ""  # where the engine's API lives under its root (per app: C7 forks)
    issues_tokens: ClassVar[bool] = False  # serves POST {root}/oauth/token

    def __init__(self) -> None:
        """Subclasses set up their registries first: ``deploy_defaults`` runs in here."""
        self.store = InstanceStore()
        self.faults = FaultKnobs()
        self.auth = SandboxAuth()
        self.counters = RequestCounters()
        self.requests = RequestLog()
        routes = [*self._control_routes(), *self.routes()]
        if self.issues_tokens:
            routes.append(Route("/oauth/token", "POST", self._token, "token"))
        self._routes = routes
        self._map = Map(
            [Rule(route.path, methods=[route.method], endpoint=index)
             for index, route in enumerate(routes)]
        )
        self.deploy_defaults()

    # -- what each engine provides ---------------------------------------------

    def routes(self) -> list[Route]:
        """The engine's own API routes (paths include ``base_path``)."""
        raise NotImplementedError

    def error_response(
        self, request: Request, status: int, message: str, extra: JsonDict
    ) -> Response:
        """An error in the engine's own format."""
        raise NotImplementedError

    def deploy(self, *args: Any, **kwargs: Any) -> JsonDict:
        """Add a process definition / template / app; returns what was deployed."""
        raise NotImplementedError

    def deploy_defaults(self) -> None:
        """Deploy the definitions every fresh sandbox of this engine has."""

    def configure(self, **options: Any) -> JsonDict:
        """Engine-specific options (none by default)."""
        if options:
            raise TypeError(f"{self.name} has no options {sorted(options)}")
        return {}

    @property
    def transient_status(self) -> int:
        """Status of the engine's own "try again later" error."""
        return 503

    def fault_message(self, status: int, fault: Fault, args: dict[str, Any]) -> str:
        """Message of an injected error; engines word it as they would."""
        return HTTPStatus(status).phrase

    def unauthorized_response(self, request: Request) -> Response:
        return self.error_response(request, 401, "Unauthorized", {})

    # -- Python API --------------------------------------------------------------

    @property
    def instances(self) -> list[JsonDict]:
        """Every instance created so far (copies), oldest first."""
        return self.store.all()

    def count(self) -> int:
        return self.store.count()

    def wait_for_instances(self, count: int, timeout: float = 5.0) -> bool:
        """Block until ``count`` instances exist (False on timeout), without polling."""
        return self.store.wait_for_count(count, timeout)

    def wait_for_start_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until ``count`` start requests arrived (False on timeout), without polling.

        With a latency fault the instance does not exist yet when this returns:
        a test can break something while the start is in flight.
        """
        return self.counters.wait_for_kind("start", count, timeout)

    def complete(self, instance_id: str) -> JsonDict:
        """Mark an instance finished (so active-only look-ups stop finding it)."""
        return self.store.update(instance_id, state="COMPLETED",
                                 ended_at=iso_millis(utc_now()))

    def stats(self) -> JsonDict:
        """Requests by route and kind, faults injected, instances created."""
        snapshot = self.counters.snapshot()
        snapshot["faults_injected"] = self.faults.snapshot()["injected"]
        snapshot["instances"] = self.count()
        return snapshot

    def reset(self) -> None:
        """Forget instances, faults, counters and auth; deployments stay."""
        self.store.clear()
        self.faults.reset()
        self.counters.clear()
        self.requests.clear()
        self.auth.reset()

    def record(
        self,
        instance_id: str,
        process: str,
        *,
        version: int | None = None,
        variables: JsonDict | None = None,
        business_key: str | None = None,
        tenant_id: str | None = None,
        tags: list[str] | None = None,
        **extra: Any,
    ) -> JsonDict:
        """Store a created instance in the shape every engine shares."""
        return self.store.add({
            "id": instance_id, "engine": self.name, "process": process, "version": version,
            "variables": variables or {}, "business_key": business_key,
            "tenant_id": tenant_id, "tags": tags or [], **extra,
        })

    # -- WSGI ------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response = self.dispatch(Request(environ))
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = self._map.bind_to_environ(request.environ)
        try:
            index, matched = adapter.match()
        except NotFound:
            self.counters.request(request.method, "<unmatched>")
            return self.error_response(request, 404, "Not Found", {})
        except MethodNotAllowed:
            self.counters.request(request.method, "<unmatched>")
            return self.error_response(request, 405, "Method Not Allowed", {})
        route, args = self._routes[int(index)], dict(matched)
        if route.kind != "control":
            self.counters.request(request.method, route.path)
            self.requests.add(route.kind, request.method, request.path, request.headers)
        if route.kind == "start":
            return self._run_start(route, request, args)
        if route.kind == "lookup":
            return self._run_lookup(route, request, args)
        if route.kind == "api" and not self._authorized(request):
            return self.unauthorized_response(request)
        return self._invoke(route, request, args)

    def _authorized(self, request: Request) -> bool:
        if self.auth.is_authorized(request):
            return True
        self.counters.kind("unauthorized")
        return False

    def _invoke(self, route: Route, request: Request, args: dict[str, Any]) -> Response:
        try:
            return route.handler(request, args)
        except Reject as rejection:
            return self.error_response(
                request, rejection.status, rejection.message, rejection.extra)
        except BodyError as exc:
            return self.error_response(request, 400, str(exc), {})

    def _run_start(self, route: Route, request: Request, args: dict[str, Any]) -> Response:
        self.counters.kind("start")
        self.faults.apply_latency()
        if not self._authorized(request):
            return self.unauthorized_response(request)
        refused = self.faults.over_capacity()
        if refused is not None:
            return self.error_response(
                request, refused, f"Over capacity: this engine takes "
                f"{self.faults.settings.capacity_per_s:g} starts per second", {})
        return self._with_fault(self.faults.next_fault("start"), route, request, args)

    def _run_lookup(self, route: Route, request: Request, args: dict[str, Any]) -> Response:
        self.counters.kind("lookup")
        if not self._authorized(request):
            return self.unauthorized_response(request)
        return self._with_fault(self.faults.next_fault("lookup"), route, request, args)

    def _with_fault(
        self, fault: Fault | None, route: Route, request: Request, args: dict[str, Any]
    ) -> Response:
        if fault is None:
            return self._invoke(route, request, args)
        if fault.latency_ms:
            time.sleep(fault.latency_ms / 1000.0)
        if fault.trickle_ms:
            request.environ[TRICKLE_ENVIRON] = fault.trickle_ms / 1000.0
        if fault.error:
            return self._fault_response(request, fault, args)
        if fault.drop == "before_commit":
            return drop_connection(request)
        response = self._invoke(route, request, args)
        if fault.drop == "after_commit":
            return drop_connection(request)
        return response

    def _fault_response(self, request: Request, fault: Fault, args: dict[str, Any]) -> Response:
        status = fault.status or self.transient_status
        if fault.body is not None:
            response = json_response(fault.body, status)
        else:
            extra = {key: value for key, value in (("code", fault.code), ("title", fault.title))
                     if value is not None}
            message = fault.message or self.fault_message(status, fault, args)
            response = self.error_response(request, status, message, extra)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = fault.retry_after
        return response

    def _token(self, request: Request, args: dict[str, Any]) -> Response:
        self.counters.kind("token")
        self.faults.apply_token_latency()
        try:
            return json_response(self.auth.issue_token(request),
                                 headers={"Cache-Control": "no-store"})
        except TokenError as exc:
            return json_response(exc.body(), exc.status)

    # -- control routes ----------------------------------------------------------------

    def _control_routes(self) -> list[Route]:
        def control(path: str, method: str, action: Callable[[JsonDict], Any]) -> Route:
            return Route(f"/_sandbox/{path}", method, _control_handler(action), "control")

        return [
            control("instances", "GET",
                    lambda _: {"count": self.count(), "instances": self.instances}),
            control("stats", "GET", lambda _: self.stats()),
            control("requests", "GET", lambda _: {"requests": self.requests.entries()}),
            control("faults", "GET", lambda _: self.faults.snapshot()),
            control("faults", "POST", self._control_faults),
            control("reset", "POST", lambda _: self.reset()),
            control("expire-tokens", "POST", lambda _: {"expired": self.auth.expire_tokens()}),
            control("deploy", "POST", lambda body: self.deploy(**body)),
            control("auth", "POST", lambda body: _auth_view(self.auth.configure(**body))),
            control("configure", "POST", lambda body: self.configure(**body)),
        ]

    def _control_faults(self, body: JsonDict) -> JsonDict:
        if "script" in body:
            self.faults.script(list(body["script"]))
        else:
            self.faults.configure(**body)
        return self.faults.snapshot()


def next_version(deployed: Iterable[int], requested: int | None, label: str) -> int:
    """The version a deployment gets: ``requested``, else one past the newest."""
    versions = set(deployed)
    version = requested if requested is not None else max(versions, default=0) + 1
    if version in versions:
        raise ValueError(f"{label} version {version} is already deployed")
    return version


def _control_handler(action: Callable[[JsonDict], Any]) -> Handler:
    """Wrap a control action: JSON object in, JSON out, 400 on bad arguments."""

    def handle(request: Request, args: dict[str, Any]) -> Response:
        try:
            result = action(read_json_object(request, empty={}))
        except (BodyError, TypeError, ValueError, KeyError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"ok": True} if result is None else result)

    return handle


def _auth_view(settings: Any) -> JsonDict:
    return {key: value for key, value in asdict(settings).items() if value is not None}
