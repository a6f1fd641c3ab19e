"""The console in a real browser, in front of a real pipeline.

* ``pipeline`` (per module): embedded Redis, a ``celery worker`` child process,
  the demo targets on the sandboxes, a schedules file, and three tokens: an
  operator (``ops``), a viewer (read-only) and a bare one;
* ``console`` (per module): the intake (which mounts the console at ``/ui``) on
  uvicorn in a thread;
* ``browser`` (per module): Debian's chromium through Playwright;
* ``page`` (per test): a fresh browser context (no cookies) on a clean Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.intake.helpers import RunningServer, start_server, stop_server
from tests.integration.conftest import Pipeline, module_pipeline
from tests.support.browser import VIEWPORT, launched
from worker.config import settings
from worker.intake import create_app
from worker.local import demo
from worker.local.sandbox import SandboxServer

OPERATOR = "console-operator-token-0123456789"
VIEWER = "console-viewer-token-0123456789"
SCHEDULES = """\
[schedules.nightly-orders]
cron = "0 2 * * *"
timezone = "Europe/Prague"
target = "orders"
process = "order-process"
business_key = "nightly-{{ date }}"

[schedules.hourly-health]
every = "1h"
target = "invoices"
process = "invoice"
"""


def _env(workdir: Path) -> dict[str, str]:
    schedules = workdir / "schedules.toml"
    schedules.write_text(SCHEDULES, encoding="utf-8")
    return {
        "STARTPROC_INTAKE_TOKENS": f"ops:{OPERATOR}:rw, viewer:{VIEWER}:ro",
        "STARTPROC_SCHEDULES": str(schedules),
        "STARTPROC_UI_DATA_DIR": str(workdir / "uploads"),
    }


pipeline = module_pipeline("console-pipeline", _env)


@pytest.fixture(scope="module")
def console(pipeline: Pipeline) -> Iterator[RunningServer]:
    running = start_server(create_app(settings()))
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as running:
        yield running


@pytest.fixture
def live(pipeline: Pipeline, sandbox: SandboxServer, redis_url: str) -> Pipeline:
    demo.configure_sandbox(sandbox)
    return pipeline


@pytest.fixture
def page(browser: Any, console: RunningServer, live: Pipeline) -> Iterator[Any]:
    context = browser.new_context(base_url=console.url, viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()
