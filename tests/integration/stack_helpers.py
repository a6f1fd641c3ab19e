"""Variations of the shared `running_pipeline` (``tests/integration/conftest.py``), not copies.

* `scoped_env`: environment variables set for a block and restored after it,
  with the settings cache cleared both ways;
* `pipeline_with`: `running_pipeline` plus extra environment (the worker and
  anything its stack starts later, such as beats, inherit it) and,
  optionally, the worker on another pool or concurrency;
* `module_pipeline`: a module-scoped ``pipeline`` fixture made of it, for a
  test module or folder that needs a few more variables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Pipeline, running_pipeline
from worker.config import settings
from worker.embedded import EmbeddedRedis
from worker.sandbox import SandboxServer

DEFAULT_CONCURRENCY = 4  # what `running_pipeline` starts its worker with


@contextmanager
def scoped_env(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` (so in every child started meanwhile) for the block."""
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in values.items():
                patch.setenv(name, value)
            settings.cache_clear()
            yield
    finally:
        settings.cache_clear()


@contextmanager
def pipeline_with(
    redis_server: EmbeddedRedis,
    sandbox: SandboxServer,
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    pool: str | None = None,
    concurrency: int | None = None,
    broker: str = "redis",
) -> Iterator[Pipeline]:
    """`running_pipeline` with ``env`` added, its worker on ``pool`` x ``concurrency`` if given.

    ``running_pipeline`` always starts a 4-thread worker; another pool or
    concurrency replaces it (stopped before the other starts, so the two
    never share jobs or the metrics port).
    """
    extra = dict(env or {})
    with scoped_env(extra), running_pipeline(broker, redis_server, sandbox, workdir) as running:
        if pool is not None or concurrency is not None:
            stack = running.stack
            for proc in list(stack.processes):
                stack.stop_process(proc)
            stack.start_worker(
                concurrency=concurrency or DEFAULT_CONCURRENCY, pool=pool or "threads"
            )
        yield dataclasses.replace(running, env={**running.env, **extra})


def module_pipeline(name: str, env: Callable[[Path], Mapping[str, str]], **options: Any) -> Any:
    """A module-scoped fixture: `pipeline_with` in a fresh ``name`` folder, ``env(folder)`` added.

    ``env`` runs when the fixture starts (free ports, files written to the
    folder); ``options`` are `pipeline_with`'s (``pool``, ``concurrency``).
    """

    @pytest.fixture(scope="module")
    def pipeline(
        redis_server: EmbeddedRedis,
        sandbox_server: SandboxServer,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> Iterator[Pipeline]:
        workdir = tmp_path_factory.mktemp(name)
        with pipeline_with(
            redis_server, sandbox_server, workdir, env=env(workdir), **options
        ) as running:
            yield running

    return pipeline
