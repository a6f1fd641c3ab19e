"""benchmarks/engine_call.py runs (timed, without valgrind) at a tiny size."""

from __future__ import annotations

import pytest

from benchmarks import engine_call

pytestmark = pytest.mark.integration


def test_engine_call_runs_start_calls_against_the_sandbox(
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine_call.main(["--n", "3", "--direct"])
    assert "3 start calls:" in capsys.readouterr().out
