"""OpenTelemetry tracing: W3C trace context from the producer, through the queue, to the engine.

A producer's context travels in the message headers ``traceparent`` and
``tracestate`` (the names OpenTelemetry's own Celery instrumentation uses, so
a foreign producer instrumented with it is continued the same way). The
worker opens one span per job as a child of it, and one client span per
engine HTTP call, which sends ``traceparent`` on to the engine.

Only the W3C trace context is propagated, never baggage: a producer's
baggage could carry anything, and none of it belongs in an engine request.
Spans carry identities (target, engine, process, status, attempts, a hash of
the idempotency key), never variables, business keys or credentials.

Exporting is off unless the standard variables ask for it
(`exporters_from_env`); `configure` then installs the SDK. Without it the
API's no-op tracer stays, and the worker skips spans entirely for a job that
arrives without a trace context (`tracing_active`): a few microseconds per
job (benchmarks/README.md). A context that did arrive is passed on to the
engine even then.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
CONTEXT_HEADERS = (TRACEPARENT, TRACESTATE)
OTLP_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
INSTRUMENTATION = "process-start-worker"

PROPAGATOR = TraceContextTextMapPropagator()
_NOTHING = nullcontext(None)  # reusable: entering it does nothing
_lock = threading.Lock()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None
_others: bool | None = None


# ---------------------------------------------------------------- set-up


def exporters_from_env(env: Mapping[str, str] | None = None) -> list[str]:
    """The exporter names the environment asks for; empty means tracing stays off.

    ``OTEL_TRACES_EXPORTER`` (comma-separated; ``none`` is none) decides when
    set. Unset, an OTLP endpoint (``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``)
    means ``otlp``. ``OTEL_SDK_DISABLED=true`` turns everything off.
    """
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = env.get("OTEL_TRACES_EXPORTER")
    if names is not None:
        chosen = [n.strip().lower() for n in names.split(",") if n.strip()]
        return [n for n in chosen if n != "none"]
    return ["otlp"] if any(env.get(name) for name in OTLP_ENDPOINT_ENVS) else []


def configure(
    service_name: str, traces_file: Path | None = None, env: Mapping[str, str] | None = None
) -> bool:
    """Install the SDK's tracer provider when the environment asks for export; True if so.

    Exporters: ``otlp`` (OTLP over HTTP/protobuf, the ``OTEL_EXPORTER_OTLP_*``
    variables), ``console``, any other installed one by its entry point name,
    and a JSON-lines file at ``traces_file`` (``STARTPROC_TRACES_FILE``). Sampling,
    batching and the resource follow the SDK's own ``OTEL_*`` variables;
    ``service_name`` applies unless ``OTEL_SERVICE_NAME`` names one. Idempotent.
    """
    global _provider, _tracer
    env = os.environ if env is None else env
    names = exporters_from_env(env)
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        traces_file = None
    if not names and not traces_file:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    with _lock:
        if _provider is not None:
            return True
        resource = Resource.create({})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: service_name}))
        provider = TracerProvider(resource=resource)
        exporters = [exporter_named(name) for name in names]
        if traces_file:
            from worker.tracing.file_export import FileSpanExporter

            exporters.append(FileSpanExporter(traces_file))
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        _provider, _tracer = provider, provider.get_tracer(INSTRUMENTATION)
        if isinstance(trace.get_tracer_provider(), ProxyTracerProvider):
            trace.set_tracer_provider(provider)  # other libraries' spans join the same traces
    return True


def exporter_named(name: str) -> SpanExporter:
    """``otlp`` is OTLP over HTTP (the gRPC exporter is not installed); else an entry point."""
    from importlib.metadata import entry_points

    from worker.errors import ConfigError

    wanted = "otlp_proto_http" if name == "otlp" else name
    for point in entry_points(group="opentelemetry_traces_exporter", name=wanted):
        exporter: SpanExporter = point.load()()
        return exporter
    installed = sorted(
        {"otlp", *(p.name for p in entry_points(group="opentelemetry_traces_exporter"))}
    )
    raise ConfigError(
        f"OTEL_TRACES_EXPORTER: no exporter {name!r} is installed; one of {', '.join(installed)}"
    )


def flush(timeout_ms: int = 5000) -> None:
    """Export what is buffered (a worker child or a CLI command about to exit)."""
    if _provider is not None:
        _provider.force_flush(timeout_ms)


def shutdown() -> None:
    """Flush and stop the exporters; later spans are dropped."""
    if _provider is not None:
        _provider.shutdown()


def tracer() -> trace.Tracer:
    """Ours once `configure` ran, else the global one (a host app's provider, or the no-op)."""
    return _tracer if _tracer is not None else trace.get_tracer(INSTRUMENTATION)


def tracing_active() -> bool:
    """Spans are recorded somewhere: ours, or a provider another part of the process set.

    Another provider (``opentelemetry-instrument``, a host app) is looked for
    once and remembered: it is set when a process starts, and looking costs
    an environment lookup, which the worker's path would pay twice per job.
    """
    global _others
    if _tracer is not None:
        return True
    if _others is None:
        _others = not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)
    return _others


@contextmanager
def using(provider: TracerProvider | None) -> Iterator[None]:
    """Record with ``provider`` for the block (tests: an in-memory exporter, no global state)."""
    global _provider, _tracer
    saved = _provider, _tracer
    _provider = provider
    _tracer = provider.get_tracer(INSTRUMENTATION) if provider is not None else None
    try:
        yield
    finally:
        _provider, _tracer = saved


# ---------------------------------------------------------------- propagation


def context_headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the current span; empty without a valid one."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return carrier


def stamp(headers: MutableMapping[str, Any]) -> None:
    """Replace the trace context in message or HTTP ``headers`` with the current one.

    A Celery retry copies the delivered message's headers: their context is
    the previous attempt's parent, not this attempt's.
    """
    for name in CONTEXT_HEADERS:
        if name in headers:
            del headers[name]
    PROPAGATOR.inject(headers)


def parent_from(carrier: Any) -> otel_context.Context | None:
    """The context a message carries (a mapping, or an object such as Celery's request)."""
    parent = _field(carrier, TRACEPARENT)
    if not isinstance(parent, str) or not parent:
        return None
    fields = {TRACEPARENT: parent}
    state = _field(carrier, TRACESTATE)
    if isinstance(state, str) and state:
        fields[TRACESTATE] = state
    extracted = PROPAGATOR.extract(fields)
    return extracted if trace.get_current_span(extracted).get_span_context().is_valid else None


def _field(carrier: Any, name: str) -> Any:
    return carrier.get(name) if isinstance(carrier, Mapping) else getattr(carrier, name, None)


# ---------------------------------------------------------------- spans


@contextmanager
def producer_span(queue: str, system: str, jobs: Sequence[Mapping[str, Any]]) -> Iterator[None]:
    """One span for one publish of ``jobs``; the messages carry its context."""
    if not tracing_active():
        yield
        return
    attributes: dict[str, Any] = {
        "messaging.system": system,
        "messaging.operation.type": "send",
        "messaging.destination.name": queue,
        "messaging.batch.message_count": len(jobs),
    }
    if len(jobs) == 1:
        attributes["messaging.message.id"] = str(jobs[0].get("job_id", ""))
        attributes.update(_job_fields(jobs[0]))
    with tracer().start_as_current_span(
        f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes
    ):
        yield


def job_span(parent: otel_context.Context | None, job_id: str, queue: str) -> Any:
    """The span of one delivery of a job, as a child of the producer's context.

    Without tracing and without a context to continue, nothing at all (the
    hot path stays as it was). With a context but no tracing, the context
    alone is made current, so the engine still gets the producer's trace.
    """
    if not tracing_active():
        return _NOTHING if parent is None else _attached(parent)
    return tracer().start_as_current_span(
        "startproc.job",
        context=parent,
        kind=SpanKind.CONSUMER,
        set_status_on_exception=False,  # a Celery retry is raised through it: not a failure
        attributes={
            "messaging.operation.type": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": job_id,
            "startproc.job_id": job_id,
        },
        record_exception=False,
    )


@contextmanager
def _attached(parent: otel_context.Context) -> Iterator[None]:
    token = otel_context.attach(parent)
    try:
        yield None
    finally:
        otel_context.detach(token)


def describe_job(
    span: Any, result: Any = None, job: Any = None, retry: float | None = None
) -> None:
    """Set what a job span shows: from its result, else from the raw job (a retry)."""
    if span is None or not span.is_recording():
        return
    if result is not None:
        from worker.keys import short_hash

        span.set_attributes(
            {
                "startproc.target": result.target or "",
                "startproc.engine": result.engine or "",
                "startproc.process": result.process or "",
                "startproc.status": result.status,
                "startproc.attempts": result.attempts,
                "startproc.key_hash": short_hash(
                    f"{result.target}:{result.idempotency_key}" if result.idempotency_key else ""
                ),
            }
        )
        if result.error is not None:
            span.set_attribute("startproc.error_kind", result.error.kind)
            if result.status == "failed":
                span.set_status(Status(StatusCode.ERROR, result.error.kind))
        return
    if isinstance(job, Mapping):
        span.set_attributes(_job_fields(job))
    span.set_attribute("startproc.status", "retry")
    if retry is not None:
        span.set_attribute("startproc.retry_in_seconds", round(retry, 3))


def _job_fields(job: Mapping[str, Any]) -> dict[str, str]:
    fields = {}
    for name in ("target", "process"):
        value = job.get(name)
        if isinstance(value, str):
            fields[f"startproc.{name}"] = value[:200]
    return fields


def http_span(method: str, host: str | None, port: int | None, engine: str) -> Any:
    """A client span around one engine call; the caller `stamp`s the request inside it.

    Without tracing, nothing (the current context, a producer's passed
    through, is still what `stamp` sends). Only the method, host and port are
    recorded: paths and queries can carry process data.
    """
    if not tracing_active():
        return _NOTHING
    attributes: dict[str, Any] = {"http.request.method": method, "startproc.engine": engine}
    if host:
        attributes["server.address"] = host
    if port:
        attributes["server.port"] = port
    return _failing_on_error(
        tracer().start_as_current_span(
            method,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,  # the SDK's status would quote the exception
        )
    )


@contextmanager
def _failing_on_error(manager: Any) -> Iterator[Any]:
    """The span's status names only the exception's type: its message may carry data."""
    with manager as span:
        try:
            yield span
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def answered(span: Any, status: int) -> None:
    """Record an engine's HTTP status on its call span (5xx marks the span failed)."""
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, str(status)))


# ---------------------------------------------------------------- logs


def add_trace_ids(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: ``trace_id`` and ``span_id`` of the current span, when there is one."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event
