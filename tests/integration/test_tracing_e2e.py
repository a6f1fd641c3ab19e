"""One trace from the producer, through the queue and a real worker process, into the engine.

The worker exports its spans to a JSON-lines file (``STARTPROC_TRACES_FILE``,
batched every 50 ms); this process records its producer spans in memory. The
sandbox records the ``traceparent`` each engine request carried.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kombu import Queue

import worker
from tests.integration.conftest import Pipeline, module_pipeline
from tests.support.tracing import (
    TRACEPARENT,
    Span,
    in_memory,
    parse_traceparent,
    wait_for_spans,
)
from worker.tracing import context as tracing

pytestmark = pytest.mark.integration

SPANS = "spans.jsonl"


def tracing_env(workdir: Path) -> dict[str, str]:
    return {
        "STARTPROC_TRACES_FILE": str(workdir / SPANS),
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SERVICE_NAME": "worker-under-test",
    }


pipeline = module_pipeline("tracing", env=tracing_env)


@pytest.fixture
def traced(pipeline: Pipeline, sandbox: Any, redis_url: str) -> Pipeline:
    """No auth on the sandbox: the targets below are the demo's, with the demo's credentials."""
    from worker.local import demo

    demo.configure_sandbox(sandbox)
    return pipeline


def spans_file(pipeline: Pipeline) -> Path:
    return Path(pipeline.env["STARTPROC_TRACES_FILE"])


def engine_requests(pipeline: Pipeline, engine: str = "camunda8") -> list[dict[str, Any]]:
    """The sandbox's start and lookup requests, in order."""
    entries = pipeline.sandbox.app(engine).requests.entries()
    return [e for e in entries if e["kind"] in ("start", "lookup")]


def job_spans(spans: list[Span], trace_id: str) -> list[Span]:
    return [s for s in spans if s["trace_id"] == trace_id and s["name"] == "startproc.job"]


def engine_calls(spans: list[Span], job: Span) -> list[Span]:
    """The engine calls (client spans) under a job span, in the order they started."""
    found = [s for s in spans if s["parent_id"] == job["span_id"] and s["kind"] == "CLIENT"]
    return sorted(found, key=lambda s: s["start_ns"])


def sent_parents(pipeline: Pipeline) -> list[str]:
    """The parent span id each engine request named, in order: one per HTTP span.

    (A request may be sent twice: the sandbox is reset between tests, so a token
    the worker cached gets a 401 and the request goes again with a new one.)
    """
    return [parse_traceparent(r["traceparent"])[1] for r in engine_requests(pipeline)]


def foreign_send(pipeline: Pipeline, job: dict[str, Any], traceparent: str) -> str:
    """What another Celery app sends: a bare ``traceparent`` header, as OpenTelemetry's
    Celery instrumentation injects it (into the message headers, read back from the
    worker's task request)."""
    other = Celery("someone-else", broker=pipeline.broker_url)
    queue = Queue(pipeline.jobs_queue, queue_arguments={"x-queue-type": "quorum"})
    sent = other.send_task(
        "startproc.start_process",
        kwargs={"job": job},
        queue=queue,
        headers={"traceparent": traceparent},
    )
    return str(sent.id)


def test_a_foreign_producers_trace_reaches_the_engine(traced: Pipeline) -> None:
    trace_id, producer_span = secrets.token_hex(16), secrets.token_hex(8)
    job = {
        "target": "orders",
        "process": "order-process",
        "business_key": "T-1",
        "variables": {"iban": "DE02120300000000202051"},
    }
    job_id = foreign_send(traced, job, TRACEPARENT.format(trace_id=trace_id, span_id=producer_span))
    assert traced.wait(job_id).status == "created"

    requests = engine_requests(traced)
    assert requests
    for request in requests:  # the foreign producer's trace, in the engine's request
        assert parse_traceparent(request["traceparent"])[0] == trace_id

    spans = wait_for_spans(
        spans_file(traced),
        lambda s: bool(job_spans(s, trace_id)) and any(x["kind"] == "CLIENT" for x in s),
        what="the job span and its HTTP span",
    )
    [job_span] = job_spans(spans, trace_id)
    assert job_span["parent_id"] == producer_span
    assert job_span["kind"] == "CONSUMER"
    assert job_span["service"] == "worker-under-test"
    calls = engine_calls(spans, job_span)
    assert [c["span_id"] for c in calls] == sent_parents(traced)  # each request's parent: its call
    assert all(c["kind"] == "CLIENT" and c["name"] == "POST" for c in calls)
    assert calls[-1]["attributes"]["http.response.status_code"] == 200
    assert job_span["attributes"]["startproc.status"] == "created"
    assert job_span["attributes"]["startproc.target"] == "orders"
    assert job_span["attributes"]["startproc.engine"] == "camunda8"
    assert job_span["attributes"]["startproc.attempts"] == 1
    assert len(job_span["attributes"]["startproc.key_hash"]) == 32
    # identities only: no variables, business keys or credentials anywhere in the spans
    text = spans_file(traced).read_text()
    for secret in ("DE02120300000000202051", "T-1", "demo-secret-not-for-production"):
        assert secret not in text


def test_our_producer_span_is_the_parent_of_the_job_span(traced: Pipeline) -> None:
    provider, exporter = in_memory()
    with tracing.using(provider), tracing.tracer().start_as_current_span("the caller's request"):
        job_id = worker.enqueue({"target": "orders", "process": "order-process"})
    assert traced.wait(job_id).status == "created"

    [send, caller] = exporter.get_finished_spans()
    assert send.name == f"send {traced.jobs_queue}" and send.parent is not None
    assert send.parent.span_id == caller.context.span_id
    assert send.attributes is not None and send.attributes["messaging.message.id"] == job_id
    trace_id = format(send.context.trace_id, "032x")
    spans = wait_for_spans(
        spans_file(traced),
        lambda s: any(engine_calls(s, j) for j in job_spans(s, trace_id)),
        what="the job span and its HTTP span",
    )
    [job_span] = job_spans(spans, trace_id)
    assert job_span["parent_id"] == format(send.context.span_id, "016x")  # producer -> job
    calls = engine_calls(spans, job_span)  # job -> HTTP
    assert calls and [c["span_id"] for c in calls] == sent_parents(traced)  # HTTP -> engine
    assert {parse_traceparent(r["traceparent"])[0] for r in engine_requests(traced)} == {trace_id}


def test_a_retried_job_stays_in_its_trace_and_logs_carry_its_ids(traced: Pipeline) -> None:
    """Four 503s use up the in-call attempts: the job goes back to the queue (a Celery
    retry), and the next attempt continues the same trace under the first one."""
    trace_id, producer_span = secrets.token_hex(16), secrets.token_hex(8)
    c8 = traced.sandbox.app("camunda8")
    c8.faults.script([{"status": 503}] * 4)
    job = {"target": "orders", "process": "order-process", "business_key": "T-2"}
    job_id = foreign_send(traced, job, TRACEPARENT.format(trace_id=trace_id, span_id=producer_span))
    result = traced.wait(job_id)
    assert result.status == "created"

    requests = engine_requests(traced)
    assert {parse_traceparent(r["traceparent"])[0] for r in requests} == {trace_id}
    spans = wait_for_spans(
        spans_file(traced), lambda s: len(job_spans(s, trace_id)) == 2, what="two job spans"
    )
    first, second = sorted(job_spans(spans, trace_id), key=lambda s: s["start_ns"])
    assert first["parent_id"] == producer_span
    assert first["attributes"]["startproc.status"] == "retry"
    assert second["parent_id"] == first["span_id"]
    assert second["attributes"]["startproc.status"] == "created"
    first_calls, second_calls = engine_calls(spans, first), engine_calls(spans, second)
    assert [c["attributes"]["http.response.status_code"] for c in first_calls][-4:] == [503] * 4
    assert all(c["status"] == "ERROR" for c in first_calls[-4:])
    assert second_calls[-1]["attributes"]["http.response.status_code"] == 200
    assert [c["span_id"] for c in first_calls + second_calls] == sent_parents(traced)

    lines = [
        json.loads(line)
        for log in traced.log_dir.glob("worker-*.log")
        for line in log.read_text().splitlines()
        if line.startswith("{") and job_id in line
    ]
    finished = [line for line in lines if line.get("event") == "job.finished"]
    assert finished and finished[0]["trace_id"] == trace_id
    assert finished[0]["span_id"] == second["span_id"]


def test_a_job_without_a_trace_context_starts_a_trace_of_its_own(traced: Pipeline) -> None:
    job_id = foreign_send(traced, {"target": "orders", "process": "order-process"}, "")
    assert traced.wait(job_id).status == "created"
    requests = engine_requests(traced)
    trace_id = parse_traceparent(requests[-1]["traceparent"])[0]
    spans = wait_for_spans(
        spans_file(traced), lambda s: bool(job_spans(s, trace_id)), what="the job span"
    )
    [job_span] = job_spans(spans, trace_id)
    assert job_span["parent_id"] is None  # a new trace, rooted at the job
    assert [s["span_id"] for s in engine_calls(spans, job_span)] == sent_parents(traced)
