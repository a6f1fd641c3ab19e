"""Failpoints do nothing unless configured, fire once or always, and reject bad specs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from worker import failpoints


def run(spec: str, tmp_path: Path, process: str = "p") -> int:
    code = (
        f"from worker.failpoints import failpoint\nfailpoint('before_send', 'job-1', {process!r})\n"
    )
    env = {"STARTPROC_FAILPOINTS": spec, "STARTPROC_FAILPOINT_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode


def test_unset_failpoints_do_nothing() -> None:
    failpoints._rules.cache_clear()
    failpoints.failpoint("before_send", "job")  # would kill the test run otherwise


def test_once_kills_the_first_time_only(tmp_path: Path) -> None:
    assert run("before_send=once", tmp_path) == -9
    assert run("before_send=once", tmp_path) == 0


def test_always_and_process_filter(tmp_path: Path) -> None:
    assert run("before_send@p=always", tmp_path) == -9
    assert run("before_send@p=always", tmp_path) == -9
    assert run("before_send@other=always", tmp_path) == 0


def test_bad_spec_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARTPROC_FAILPOINTS", "somewhere=sometimes")
    failpoints._rules.cache_clear()
    with pytest.raises(ValueError, match="STARTPROC_FAILPOINTS"):
        failpoints.failpoint("before_send", "job")
    failpoints._rules.cache_clear()
