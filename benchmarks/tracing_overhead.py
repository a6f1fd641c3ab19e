"""What tracing costs one job on the worker's path, in microseconds (no Redis, no HTTP).

    python -m benchmarks.tracing_overhead [--n 100000]

It runs the tracing calls one start makes, nothing else: reading the
message's context (`tracing.parent_from`), the job span, its attributes, one
engine call's span with ``traceparent`` stamped on the request, and the
status. Three cases: exporting off and no context in the message (the
default), exporting off with a producer's ``traceparent`` (passed through to
the engine), and the SDK recording every span into a no-op exporter.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from requests.structures import CaseInsensitiveDict

from worker.models import Result
from worker.tracing import context as tracing

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def one_job(request: Any, result: Result) -> None:
    parent = tracing.parent_from(request)
    with tracing.job_span(parent, "job-1", "startproc.jobs") as span:
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict({"Content-Type": "json"})
        with tracing.http_span("POST", "127.0.0.1", 8080, "camunda8") as call:
            tracing.stamp(headers)
            tracing.answered(call, 200)
        tracing.describe_job(span, result)


def per_job_us(request: Any, result: Result, n: int) -> float:
    for _ in range(min(n, 1000)):  # warm up
        one_job(request, result)
    start = time.perf_counter_ns()
    for _ in range(n):
        one_job(request, result)
    return (time.perf_counter_ns() - start) / n / 1000


def baseline_us(n: int) -> float:
    """The loop and the header dict alone, to subtract."""
    start = time.perf_counter_ns()
    for _ in range(n):
        CaseInsensitiveDict({"Content-Type": "json"})
    return (time.perf_counter_ns() - start) / n / 1000


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args(argv)
    result = Result.model_validate(
        {
            "job_id": "job-1",
            "target": "orders",
            "engine": "camunda8",
            "process": "p",
            "status": "created",
            "attempts": 1,
            "idempotency_key": "orders:p:A-1",
        }
    )
    bare, traced = SimpleNamespace(), SimpleNamespace(traceparent=PARENT)
    base = baseline_us(args.n)
    figures = {
        "off, no context": per_job_us(bare, result, args.n) - base,
        "off, producer context passed through": per_job_us(traced, result, args.n) - base,
    }
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SpanExporter()))  # records, exports nowhere
    with tracing.using(provider):
        figures["on (SDK, spans recorded)"] = per_job_us(traced, result, args.n // 10) - base
    for name, value in figures.items():
        print(f"{name:40s} {value:8.2f} us/job")
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
