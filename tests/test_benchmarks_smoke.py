"""The benchmark scripts run end to end at tiny sizes.

Benchmarks are scripts, not tests: nothing here checks a number, only that
every benchmark runs on a real stack and lands in one table and RESULTS.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import hotpath_parts, pipeline, run_all
from benchmarks.common import REPO, Bench, steady_rate

pytestmark = pytest.mark.integration

MEASURED = {
    ("P1", "throughput"),
    ("P1", "worker CPU per start"),
    ("P1", "Redis commands per start"),
    ("P1", "instructions per handle()"),
    ("P2", "throughput"),
    ("P2", "worker CPU per start"),
    ("P2 x2", "throughput"),
    ("P2 x2", "worker CPU per start"),
    ("P4", "latency p50"),
    ("P4", "latency p99"),
}


def test_run_all_quick_prints_and_writes_one_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "RESULTS.md"
    rows = run_all.main(["--quick", "--output", str(output)])

    measured = {(row.bench, row.metric) for row in rows if row.value is not None}
    assert measured >= MEASURED
    assert all(row.value > 0 for row in rows if row.value is not None)
    printed = capsys.readouterr().out
    written = output.read_text(encoding="utf-8")
    for text in (printed, written):
        assert "| bench | metric | value |" in text
        assert "| P1 | throughput |" in text
    assert "## Machine" in written and "redis-server:" in written


def test_a_tickless_sandbox_is_reported_as_unmeasured_not_as_zero() -> None:
    row = pipeline.sandbox_row(0.0, 30)
    assert row.value is None and "under one tick" in row.note
    assert pipeline.sandbox_row(0.02, 100).value == pytest.approx(200.0)


def test_p3_hook_reports_a_missing_script() -> None:
    report = run_all.p3_in_process(quick=True, module="benchmarks.not_written_yet")
    [row] = report.rows
    assert row.value is None and "not written yet" in row.note


def test_the_rate_while_full_leaves_out_a_rounds_start_up_and_drain() -> None:
    # 4 threads: a slow first wave (1 s to start), then one completion every 0.1 s,
    # then a drain of 4 completions spread over 2 s
    times = [1.0 + i * 0.01 for i in range(4)] + [2.0 + i * 0.1 for i in range(11)]
    times += [3.5, 4.0, 4.5, 5.0]
    assert steady_rate(times, 4) == pytest.approx(10.0)
    assert steady_rate(times[:12], 4) is None  # no whole wave in the middle to measure
    bursts = [wave * 0.2 + i * 1e-4 for wave in range(10) for i in range(64)]  # 64 at once
    assert steady_rate(bursts, 64) == pytest.approx(320.0, rel=0.01)


def test_every_hotpath_part_runs_in_its_child() -> None:
    """Each part as its callgrind child runs it (here without valgrind), on a real stack."""
    with Bench.open():
        for part in hotpath_parts.PARTS:
            subprocess.run(
                [sys.executable, "-m", "benchmarks.hotpath_parts", "--child", part,
                 "--calls", "2"],
                check=True, cwd=REPO, timeout=120, stdout=subprocess.DEVNULL,
            )
