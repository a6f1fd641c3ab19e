"""One sandbox server (all five engines) for the whole sandbox suite; state reset per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from worker.local.sandbox import SandboxServer

from .helpers import EngineClient, client_for


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer("all") as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(sandbox: SandboxServer) -> Iterator[None]:
    yield
    sandbox.reset()
    sandbox.app("camunda8").configure(api_version="8.8", business_id_unique=False)


@pytest.fixture
def client(sandbox: SandboxServer) -> Callable[[str], EngineClient]:
    return lambda engine: client_for(sandbox, engine)


@pytest.fixture
def c8(client: Callable[[str], EngineClient]) -> EngineClient:
    return client("camunda8")
