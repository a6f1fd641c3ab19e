"""Fixtures of the engine tests."""

from __future__ import annotations

import types

import pytest

import worker.engines.auth
from tests.support.oauth import Clock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(worker.engines.auth, "time", types.SimpleNamespace(monotonic=fake))
    return fake
