"""What every engine adapter must do, and the one HTTP outcome -> error mapping.

An adapter is small on purpose. It answers four questions and nothing else:

1. `build_request`: what HTTP request starts this job? (Validates the job's
    ``options`` and everything the engine would reject, *before* sending;
    `Engine.start_request` adds what HTTP itself cannot carry.)
    Engines that start processes by message (``supports_messages``) also
    answer it for a job that names a start message (`build_message_request`);
    `request_for` picks the one a job needs, and refuses a message elsewhere.
2. `classify`: is this response a success, and if not, which error class?
   Start from `classify_http` and override only the engine's quirks.
3. `instance_id`: which field of a success body is the instance id?
4. `lookup`: given the idempotency key, does an instance already exist?
   (Engines without a reliable lookup leave ``supports_lookup`` False.)

Sending, the one 401 refresh-and-retry, and transport errors live here in
`Engine.start`, so adapters never handle sockets, tokens or retries.
Credentials are applied in `Engine.prepare`, before the caller's
``before_send`` hook (where the service marks the send in its ledger), so a
slow token endpoint never eats into the lease that mark starts.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, ConfigDict, ValidationError
from requests.exceptions import InvalidHeader
from requests.utils import check_header_validity

from worker.engines.auth import Credentials
from worker.engines.http import (
    CallState,
    call_deadline,
    exchange,
    parse_retry_after,
    prepare_direct,
    transport_error,
)
from worker.errors import (
    AmbiguousError,
    AuthenticationError,
    Backpressure,
    InvalidJob,
    JobError,
    PermanentError,
    TransientError,
)
from worker.models import Job
from worker.targets import TargetBase
from worker.tracing import context as tracing
from worker.validation import describe

KEY_VARIABLE = "_startproc_key"
"""Variable that carries the idempotency key into engines whose lookup searches variables."""

_TRANSIENT = {408, 425, 429, 503}
_BACKPRESSURE = {429, 503}
_AMBIGUOUS = {500, 502, 504}
_NOT_IMPLEMENTED = {501, 505}

OptionsT = TypeVar("OptionsT", bound=BaseModel)


class Options(BaseModel):
    """Base of each engine's ``job.options`` model: unknown options are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class StartRequest:
    """One HTTP request, relative to the target's ``base_url``.

    ``context`` holds what the adapter built the request from and needs again
    when the answer comes (never sent). ``deferred`` marks a request the
    adapter completes right before sending (`Engine.resolve`, e.g. a look-up
    of the definition key): credentials are applied only then.
    """

    method: str
    path: str
    json: Any = None
    form: dict[str, str] | None = None
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    context: dict[str, str] = field(default_factory=dict)
    deferred: bool = False


@dataclass(frozen=True)
class Started:
    """A started instance: its id and the engine's raw answer (kept for TAS).

    ``existing``: the engine pointed at an instance another start made (the
    job asked for it instead of a conflict), so the job is a duplicate.
    """

    instance_id: str
    http_status: int
    body: Any = None
    existing: bool = False


def response_body(response: requests.Response) -> Any:
    """The decoded JSON body, the text when it is not JSON, None when empty."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text[:4096]


def check_sendable(request: StartRequest) -> None:
    """Refuse what requests would refuse only while preparing the send (`InvalidJob`).

    NaN/Infinity in a JSON body and CR, LF or leading whitespace in a header
    value fail there, inside `Engine.send`, where they looked like a connection
    lost after sending: checked before the claim instead, with requests' own
    rules (the header values never include credentials, which are added at send).
    """
    for name, value in request.headers.items():
        try:
            check_header_validity((name, value))
        except InvalidHeader:
            raise InvalidJob(
                f"header {name}: CR, LF and leading whitespace cannot be sent in a header"
            ) from None
    if request.json is not None:
        try:
            json.dumps(request.json, allow_nan=False)
        except ValueError:
            raise InvalidJob("request body: NaN and Infinity are not JSON numbers") from None


def classify_http(
    engine: str, status: int, body: Any, headers: Any, summary: str | None = None
) -> JobError | None:
    """The default mapping from an HTTP status to the error tree; None means success."""
    if 200 <= status < 300:
        return None
    detail = f"{engine} answered {status}" + (f": {summary}" if summary else "")
    if status == 401:
        return AuthenticationError(detail, http_status=status, engine_error=body)
    if status in _TRANSIENT:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        kind = Backpressure if status in _BACKPRESSURE else TransientError
        return kind(detail, http_status=status, engine_error=body, retry_after=retry_after)
    if status in _NOT_IMPLEMENTED:
        return PermanentError(detail, http_status=status, engine_error=body)
    if status in _AMBIGUOUS or status >= 500:
        return AmbiguousError(
            detail + " (the instance may exist)", http_status=status, engine_error=body
        )
    return PermanentError(detail, http_status=status, engine_error=body)


class Engine(ABC):
    """One target's adapter. Instances are shared by all worker threads: keep them stateless."""

    name: ClassVar[str]
    options_model: ClassVar[type[Options]] = Options
    supports_lookup: ClassVar[bool] = False
    supports_messages: ClassVar[bool] = False

    def __init__(self, target: TargetBase, session: requests.Session, credentials: Credentials):
        self.target = target
        self.session = session
        self.credentials = credentials
        origin = urlsplit(target.base_url)
        self._host, self._port = origin.hostname, origin.port

    # ---- the four things an adapter defines ---------------------------------

    @abstractmethod
    def build_request(self, job: Job, key: str) -> StartRequest:
        """The start request for ``job``; `InvalidJob` for anything the engine would reject."""

    def build_message_request(self, job: Job, key: str) -> StartRequest:
        """The request that starts ``job`` by its ``message`` (``supports_messages`` only)."""
        raise NotImplementedError(f"{self.name} has no start by message")

    def request_for(self, job: Job, key: str) -> StartRequest:
        """The request that starts ``job``: by its process, or by its start message."""
        if job.message is None:
            return self.build_request(job, key)
        if not self.supports_messages:
            raise InvalidJob(
                f"message: {self.name} cannot start a process by message (only camunda8 "
                "and camunda7 targets can); name the process instead"
            )
        return self.build_message_request(job, key)

    def classify(self, response: requests.Response, body: Any) -> JobError | None:
        """Success (None) or the error for this response. Override for engine quirks."""
        return classify_http(
            self.name, response.status_code, body, response.headers, self.summarize(body)
        )

    @abstractmethod
    def instance_id(self, body: Any) -> str:
        """The instance id in a success body, as a string."""

    def lookup(self, job: Job, key: str) -> str | None:
        """The id of an instance already started for ``key``, or None when there is none."""
        raise NotImplementedError(f"{self.name} has no lookup")

    def resolve(self, request: StartRequest) -> StartRequest:
        """Complete a ``deferred`` request right before it is sent (network allowed here)."""
        raise NotImplementedError(f"{self.name} defers no request")

    def probe_request(self) -> StartRequest | None:
        """A harmless read that proves the engine answers with our credentials (or None)."""
        return None

    # ---- shared behaviour -----------------------------------------------------

    def summarize(self, body: Any) -> str | None:
        """A one-line summary of an error body for messages."""
        if isinstance(body, dict):
            for name in ("detail", "message", "error_description", "error", "title"):
                value = body.get(name)
                if isinstance(value, str) and value:
                    return value[:500]
                if isinstance(value, dict) and isinstance(value.get("message"), str):
                    return str(value["message"])[:500]
        if isinstance(body, str) and body:
            return body[:200]
        return None

    def options(self, job: Job, model: type[OptionsT]) -> OptionsT:
        """Validate ``job.options`` against the engine's options model."""
        try:
            return model.model_validate(job.options)
        except ValidationError as exc:
            raise InvalidJob(
                "; ".join(describe(exc, model.model_fields, prefix="options"))
            ) from None

    def fetch(self, request: StartRequest) -> Any:
        """A look-up call: the decoded body, or the engine's classified error raised."""
        response = self.send(request)
        body = response_body(response)
        error = self.classify(response, body)
        if error is not None:
            raise error
        return body

    def send(
        self,
        request: StartRequest,
        prepared: requests.PreparedRequest | None = None,
        before_send: Callable[[], None] | None = None,
    ) -> requests.Response:
        """One HTTP exchange, with a single refresh-and-retry when a cached token got 401.

        ``prepared`` is `prepare`'s result when the caller applied the
        credentials earlier. ``before_send`` runs right before each
        transmission, once the credentials are in place: after a 401 that is
        again, after the new token, so the resend gets a lease of its own.
        """
        for attempt in (1, 2):
            call = CallState()
            try:
                if prepared is None:
                    prepared = self.prepare(request)
                if before_send is not None:
                    before_send()
                response = self._exchange(prepared, call)
            except requests.RequestException as exc:
                raise transport_error(exc, self.name, written=call.written) from None
            except OSError as exc:  # requests wraps network errors: these are local files
                if isinstance(exc, TimeoutError | ConnectionError):
                    raise
                raise PermanentError(
                    f"{self.name}: the call could not be made ({type(exc).__name__}: "
                    f"{exc.strerror or exc}); nothing was sent"
                ) from None
            if response.status_code == 401 and self.credentials.refreshable and attempt == 1:
                self.credentials.invalidate(response.request)
                prepared = None
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def prepare(self, request: StartRequest) -> requests.PreparedRequest:
        """The request ready to send, credentials applied (an OAuth2 token is fetched here).

        ``Session.request`` would merge cookie jars, run hooks and follow
        redirects on every call, about 0.4 ms of CPU per start that buys an
        engine API nothing: credentials travel with each request, and a start
        must never follow a redirect. A call on the direct path (no proxy, no
        mock, no form) is prepared by `prepare_direct`: the same request, at
        less than half the cost. Credential errors are the provider's own
        (`TransientError` for an unreachable token endpoint, ...); a request
        that cannot even be built was sent nowhere: `InvalidJob`.
        """
        session = self.session
        url = self.target.base_url + request.path
        try:
            if request.form is None:
                direct = prepare_direct(
                    session, request.method, url, request.headers, request.params,
                    request.json, self.credentials,
                )
                if direct is not None:
                    return direct
            prepared = requests.PreparedRequest()
            prepared.prepare(
                method=request.method,
                url=url,
                headers={**session.headers, **request.headers},
                data=request.form,
                params=request.params or None,
                auth=self.credentials,
                json=request.json,
            )
        except requests.RequestException as exc:  # refused while encoding: nothing was sent
            raise InvalidJob(f"the request cannot be sent: {type(exc).__name__}") from None
        return prepared

    def _exchange(
        self, prepared: requests.PreparedRequest, call: CallState | None = None
    ) -> requests.Response:
        """Send a prepared request on the session (`exchange`) and read the whole answer.

        The answer is read, to its last byte, within ``connect_timeout +
        timeout`` of the call's start (the lease is checked to outlast that
        at start-up): a trickling answer is cut there and is ambiguous, never
        waited out. Connecting and sending keep their own timeouts.
        The session still owns the pool, the mounted adapters, TLS and proxy
        settings; without a proxy or a mock the call skips requests' ``send``
        (`worker.engines.http.session`). Each call is a client span of
        the job's trace and sends its ``traceparent`` (`worker.tracing.context`).
        """
        target = self.target
        with (
            tracing.http_span(prepared.method or "", self._host, self._port, self.name) as span,
            call_deadline(target.connect_timeout + target.timeout, call),
        ):
            tracing.stamp(prepared.headers)  # the engine joins the job's trace
            response = exchange(self.session, prepared, (target.connect_timeout, target.timeout))
            tracing.answered(span, response.status_code)
        return response

    def start_request(self, job: Job, key: str) -> StartRequest:
        """`request_for`, checked to be sendable: decided before anything is claimed."""
        request = self.request_for(job, key)
        check_sendable(request)
        return request

    def start(self, job: Job, key: str) -> Started:
        """Build, send, classify: one attempt. Retrying is the caller's policy."""
        return self.execute(self.start_request(job, key))

    def execute(
        self,
        request: StartRequest,
        prepared: requests.PreparedRequest | None = None,
        before_send: Callable[[], None] | None = None,
    ) -> Started:
        """Send a built start request and turn the answer into `Started` or an error.

        ``prepared`` and ``before_send`` are `send`'s: the service marks the
        send in ``before_send``, after the credentials are in place.
        """
        if request.deferred:
            request, prepared = self.resolve(request), None
        response = self.send(request, prepared, before_send)
        body = response_body(response)
        error = self.classify(response, body)
        if error is not None:
            raise error
        try:
            instance_id = self.instance_id(body)
            if not instance_id:
                raise ValueError("empty instance id")
        except (KeyError, TypeError, ValueError):
            raise AmbiguousError(
                f"{self.name} answered {response.status_code} without an instance id",
                http_status=response.status_code,
                engine_error=body,
            ) from None
        return Started(instance_id=instance_id, http_status=response.status_code, body=body)
