"""Reading spans back: an in-memory provider for this process, the JSON-lines file of others.

A worker subprocess exports its spans to ``STARTPROC_TRACES_FILE``
(`worker.tracing.file_export`); tests wait for the lines they need, under a
deadline, instead of sleeping through the batch processor's delay.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

Span = dict[str, Any]
TRACEPARENT = "00-{trace_id}-{span_id}-01"


def in_memory() -> tuple[TracerProvider, InMemorySpanExporter]:
    """A provider that keeps every finished span in memory, for `worker.tracing.context.using`."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def read_spans(path: Path) -> list[Span]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_spans(
    path: Path, found: Callable[[list[Span]], bool], timeout: float = 30.0, what: str = "spans"
) -> list[Span]:
    """The file's spans once ``found(spans)`` holds; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        spans = read_spans(path)
        if found(spans):
            return spans
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in {path} within {timeout}s; it has:\n{spans}")
        time.sleep(0.05)


def parse_traceparent(value: str | None) -> tuple[str, str]:
    """(trace id, parent span id) of a W3C ``traceparent`` header."""
    assert value, "no traceparent header"
    version, trace_id, span_id, _flags = value.split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16, value
    return trace_id, span_id
