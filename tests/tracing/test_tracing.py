"""worker.tracing.context: when exporting is on, what a message carries, what spans show and hide.

Spans recorded in this process go to an in-memory provider through
`tracing.using` (no global state); what a configured process exports is
checked in a child interpreter, which reads its own environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import sandbox_targets
from tests.support.tracing import TRACEPARENT, in_memory, parse_traceparent
from worker.celery_app import PUBLISHED_AT, message_headers
from worker.engines import EngineCache
from worker.errors import AmbiguousError
from worker.local.sandbox import SandboxServer
from worker.models import Job
from worker.tracing import context as tracing

REPO = Path(__file__).resolve().parents[2]
PARENT = TRACEPARENT.format(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, []),
        ({"OTEL_TRACES_EXPORTER": "console, OTLP"}, ["console", "otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_exporting_is_off_unless_the_standard_variables_ask(
    env: dict[str, str], expected: list[str]
) -> None:
    assert tracing.exporters_from_env(env) == expected


def test_an_exporter_that_is_not_installed_is_a_configuration_error() -> None:
    from worker.errors import ConfigError

    with pytest.raises(ConfigError, match="no exporter 'zipkin' is installed; one of console"):
        tracing.configure("test", env={"OTEL_TRACES_EXPORTER": "zipkin"})
    assert not tracing.configure("test", env={})  # nothing asked: the no-op stays


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STARTPROC_"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


PRODUCE_SPAN = """
from worker.tracing import context as tracing
from worker.config import settings
print(tracing.configure("from-the-test", settings().traces_file))
with tracing.tracer().start_as_current_span("work"):
    print(tracing.context_headers().get("traceparent", ""))
"""


def test_a_configured_process_exports_its_spans_to_the_file(tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    out = run_python(PRODUCE_SPAN, {"STARTPROC_TRACES_FILE": str(spans)}).stdout.split()
    assert out[0] == "True"
    trace_id, span_id = parse_traceparent(out[1])
    [span] = [json.loads(line) for line in spans.read_text().splitlines()]  # flushed at exit
    assert (span["trace_id"], span["span_id"], span["name"]) == (trace_id, span_id, "work")
    assert span["service"] == "from-the-test"


def test_without_configuration_nothing_is_exported_and_no_context_is_made(tmp_path: Path) -> None:
    out = run_python(PRODUCE_SPAN, {"OTEL_SDK_DISABLED": "true"}).stdout.split()
    assert out == ["False"]  # no traceparent printed: the no-op tracer makes no context


def test_otel_service_name_wins_over_ours(tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    run_python(PRODUCE_SPAN, {"STARTPROC_TRACES_FILE": str(spans), "OTEL_SERVICE_NAME": "mine"})
    assert json.loads(spans.read_text().splitlines()[0])["service"] == "mine"


# ---------------------------------------------------------------- messages


@pytest.mark.parametrize(
    "value",
    [None, "", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", 42],
)
def test_a_missing_or_invalid_traceparent_is_no_parent(value: Any) -> None:
    assert tracing.parent_from({"traceparent": value}) is None


def test_a_message_context_is_read_from_a_mapping_or_a_task_request() -> None:
    class Request:
        traceparent = PARENT
        tracestate = "vendor=1"

    for carrier in ({"traceparent": PARENT, "tracestate": "vendor=1"}, Request()):
        parent = tracing.parent_from(carrier)
        assert parent is not None
        with tracing.job_span(parent, "job-1", "q"):
            headers = tracing.context_headers()
        assert headers == {"traceparent": PARENT, "tracestate": "vendor=1"}  # passed through


def test_a_start_jobs_headers_get_the_publish_time_and_the_current_context() -> None:
    """A retry hands the delivered message's headers back: their context is replaced."""
    provider, _ = in_memory()
    stale = {"id": "job-1", "traceparent": PARENT, "tracestate": "old=1", PUBLISHED_AT: 1.0}
    with tracing.using(provider), tracing.tracer().start_as_current_span("attempt") as span:
        headers = message_headers(stale)
    assert headers["id"] == "job-1" and headers[PUBLISHED_AT] > 1.0
    assert parse_traceparent(headers["traceparent"])[1] == format(
        span.get_span_context().span_id, "016x"
    )
    assert "tracestate" not in headers
    assert stale["traceparent"] == PARENT  # the delivered message's own dict is left alone
    assert message_headers(None)[PUBLISHED_AT] > 0
    assert "traceparent" not in message_headers(None)  # no context, none invented


# ---------------------------------------------------------------- spans


@pytest.fixture
def engine(sandbox: SandboxServer) -> Any:
    sandbox.app("camunda7").auth.configure(type="basic", username="u", password="s3cret-pw")
    targets = sandbox_targets(
        sandbox, camunda7={"auth": {"type": "basic", "username": "u", "password": "s3cret-pw"}}
    )
    return EngineCache(targets).get("camunda7")


def test_the_engine_call_is_a_child_span_and_sends_its_context(
    engine: Any, sandbox: SandboxServer
) -> None:
    provider, exporter = in_memory()
    job = Job.parse(
        {
            "target": "camunda7",
            "process": "invoice",
            "business_key": "BK-1",
            "variables": {"iban": "DE02120300000000202051"},
        }
    )
    with tracing.using(provider):
        parent = tracing.parent_from({"traceparent": PARENT})
        with tracing.job_span(parent, "job-1", "startproc.jobs") as span:
            started = engine.start(job, "camunda7:invoice:BK-1")
            tracing.describe_job(span, result=_result(started.instance_id))
    call, job_span = exporter.get_finished_spans()
    assert job_span.parent is not None and job_span.parent.span_id == int("00f067aa0ba902b7", 16)
    assert call.parent is not None and call.parent.span_id == job_span.context.span_id
    [request] = [r for r in sandbox.app("camunda7").requests.entries() if r["kind"] == "start"]
    assert parse_traceparent(request["traceparent"]) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        format(call.context.span_id, "016x"),
    )
    shown = json.dumps([dict(s.attributes or {}) for s in (call, job_span)])
    for secret in ("DE02120300000000202051", "BK-1", "s3cret-pw", "invoice/"):
        assert secret not in shown
    assert dict(call.attributes or {})["server.address"] == "127.0.0.1"


def _result(instance_id: str) -> Any:
    from worker.models import Result

    return Result.model_validate(
        {
            "job_id": "job-1",
            "target": "camunda7",
            "engine": "camunda7",
            "process": "invoice",
            "status": "created",
            "attempts": 1,
            "idempotency_key": "camunda7:invoice:BK-1",
            "instance_id": instance_id,
        }
    )


def test_a_failed_call_names_only_the_errors_type(engine: Any, sandbox: SandboxServer) -> None:
    provider, exporter = in_memory()
    sandbox.app("camunda7").faults.script([{"drop": "before_commit"}])
    job = Job.parse({"target": "camunda7", "process": "invoice"})
    with (
        tracing.using(provider),
        tracing.job_span(None, "job-2", "q"),
        pytest.raises(AmbiguousError),  # the connection dropped after the request went out
    ):
        engine.start(job, "k")
    call = exporter.get_finished_spans()[0]
    assert call.status.description == "ConnectionError"  # requests' error, raised through it
    assert not call.events  # no exception event: its message may carry data


def test_without_tracing_a_job_without_context_gets_no_span_and_sends_no_header(
    engine: Any, sandbox: SandboxServer
) -> None:
    assert not tracing.tracing_active()
    with tracing.job_span(None, "job-3", "q") as span:
        assert span is None
        engine.start(Job.parse({"target": "camunda7", "process": "invoice"}), "k3")
    [request] = [r for r in sandbox.app("camunda7").requests.entries() if r["kind"] == "start"]
    assert request["traceparent"] is None


LOG_IN_A_SPAN = """
import structlog
from worker.tracing import context as tracing
from worker.logs import configure
configure("INFO", "json")
log = structlog.get_logger("test")
from worker.config import settings
tracing.configure("logs", settings().traces_file)
with tracing.tracer().start_as_current_span("job"):
    print(tracing.context_headers()["traceparent"], flush=True)
    log.info("inside")
log.info("outside")
"""


def test_log_lines_inside_a_span_carry_its_ids(tmp_path: Path) -> None:
    env = {"STARTPROC_TRACES_FILE": str(tmp_path / "spans.jsonl")}
    done = run_python(LOG_IN_A_SPAN, env)
    trace_id, span_id = parse_traceparent(done.stdout.split()[0])
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    inside, outside = (next(x for x in lines if x["event"] == e) for e in ("inside", "outside"))
    assert (inside["trace_id"], inside["span_id"]) == (trace_id, span_id)
    assert "trace_id" not in outside
