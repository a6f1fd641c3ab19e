"""A Camunda 8 adapter for target ``t`` at `BASE`, and its jobs: for tests that mock its HTTP."""

from __future__ import annotations

from typing import Any

from worker.engines import build_engine
from worker.engines.camunda8 import Camunda8
from worker.models import Job
from worker.targets import Targets

BASE = "http://c8.test"


def engine(api_version: str = "8.8", **fields: Any) -> Camunda8:
    """The adapter as the worker builds it from a targets file (``fields``: more settings)."""
    raw = {"engine": "camunda8", "base_url": BASE, "api_version": api_version, **fields}
    adapter = build_engine(Targets.from_dict({"targets": {"t": raw}}, env={})["t"])
    assert isinstance(adapter, Camunda8)
    return adapter


def job(**fields: Any) -> Job:
    return Job.parse({"target": "t", "process": "order-process", **fields})
