"""`module_pipeline`: a module-scoped ``pipeline`` fixture from the shared `running_pipeline`.

For a test module or folder that needs a few more environment variables (or
another pool) than ``tests/integration/conftest.py``'s own fixtures give.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Pipeline, running_pipeline
from worker.embedded import EmbeddedRedis
from worker.sandbox import SandboxServer


def module_pipeline(name: str, env: Callable[[Path], Mapping[str, str]], **options: Any) -> Any:
    """A fixture running `running_pipeline` on Redis in a fresh ``name`` folder.

    ``env(folder)`` runs when the fixture starts (free ports, files written to
    the folder) and is added to the pipeline's environment; ``options`` are
    `running_pipeline`'s (``pool``, ``concurrency``).
    """

    @pytest.fixture(scope="module")
    def pipeline(
        redis_server: EmbeddedRedis,
        sandbox_server: SandboxServer,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> Iterator[Pipeline]:
        workdir = tmp_path_factory.mktemp(name)
        with running_pipeline(
            "redis", redis_server, sandbox_server, workdir, extra_env=env(workdir), **options
        ) as running:
            yield running

    return pipeline
