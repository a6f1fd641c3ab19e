"""LocalStack's own bookkeeping, without starting Redis or Celery."""

from __future__ import annotations

import threading

import pytest

from worker.local.stack import LocalStack


def test_ctrl_c_while_the_supervisor_starts_still_stops_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A KeyboardInterrupt between making the supervisor thread and starting it."""
    stack = LocalStack(broker_url="redis://127.0.0.1:1/0")

    def interrupted(self: threading.Thread) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stack._watch()
    monkeypatch.undo()
    stack.stop()  # used to raise "cannot join thread before it is started"
    assert stack._watcher is None


def test_the_supervisor_is_started_once_and_stopped() -> None:
    stack = LocalStack(broker_url="redis://127.0.0.1:1/0")
    stack._watch()
    first = stack._watcher
    stack._watch()
    assert first is not None and stack._watcher is first and first.is_alive()
    stack.stop()
    assert not first.is_alive()
