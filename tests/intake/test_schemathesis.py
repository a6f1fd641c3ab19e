"""Property-based tests of the intake against its own OpenAPI document (schemathesis).

For every operation schemathesis generates requests from the document --
valid ones (positive mode) and invalid ones (negative mode) -- sends them to
the app in process through its ASGI interface, with a real Redis as broker
and results store but no worker, and checks each response with its default
checks: never a 5xx; status code, content type, headers and body as the
document declares them; authentication actually enforced. Examples are
bounded and derandomized (no example database), so every run is the same.

The operations are driven with ``operation.as_strategy()`` and Hypothesis'
``@given`` rather than schemathesis' pytest plugin, whose lazy fixture
loader does not run on pytest 9.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import make_settings
from worker.intake import create_app
from worker.local import demo
from worker.local.sandbox import SandboxServer
from worker.targets import load_targets

from .helpers import AUTH, TOKEN

MAX_EXAMPLES = 30
PARAMETERLESS = {"/healthz", "/metrics"}
REPO = Path(__file__).resolve().parents[2]
OPERATIONS = [
    (method.upper(), path)
    for path, item in json.loads((REPO / "docs" / "openapi.json").read_text())["paths"].items()
    for method in item
]


@pytest.fixture
def intake_schema(
    redis_url: str,
    sandbox_server: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:
    """The app's own document, loaded from the app (so ``from_asgi`` calls reach it)."""
    monkeypatch.setenv(demo.SECRET_VAR, demo.DEMO_SECRET)
    targets = demo.write_targets(sandbox_server, tmp_path / "targets.toml")
    cfg = make_settings(redis_url, intake_tokens=TOKEN, targets=targets)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(cfg))
    # The token is sent with every case (below); the ignored_auth check still
    # sends requests without it and expects 401.
    schema.config.generation.update(with_security_parameters=False)
    yield schema
    load_targets.cache_clear()


def _configured_targets(body: Any) -> None:
    """A job must name a target of the targets file, which no schema can say: each generated
    job gets one, so every other schema-valid field must still be accepted (202)."""
    for job in body if isinstance(body, list) else [body]:
        if isinstance(job, dict) and "target" in job:
            job["target"] = "orders"


CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    # No parameters and no body: there is nothing to make invalid.
    if mode is GenerationMode.POSITIVE or path not in PARAMETERLESS
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_operation_conforms_to_the_document(
    intake_schema: Any, method: str, path: str, mode: GenerationMode
) -> None:
    operation = intake_schema[path][method]
    # Whether a batch is valid depends on the targets file and the file's
    # content, which no schema can say: a schema-valid batch may rightly be 422.
    excluded = [positive_data_acceptance] if path == "/batches" else []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        if (method, path, mode) == ("POST", "/jobs", GenerationMode.POSITIVE):
            _configured_targets(case.body)
        case.call_and_validate(headers=AUTH, excluded_checks=excluded)

    check()
