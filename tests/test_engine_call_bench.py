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


@pytest.mark.parametrize("client", ["http.client", "urllib3"])
def test_the_floors_make_the_same_start_straight_through_a_client(client: str) -> None:
    proc, base_url = engine_call.sandbox()
    try:
        engine_call.raw_calls(client, base_url, 2)  # raises on an answer that is not JSON
    finally:
        proc.terminate()
        proc.wait(timeout=10)
