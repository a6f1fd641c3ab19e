"""The README's Redis sizing table is what `benchmarks.redis_sizing` measures on a real Redis."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.redis_sizing import measure

README = Path(__file__).resolve().parents[2] / "README.md"


def documented() -> dict[str, tuple[float, int]]:
    """Data kind -> (keys per job, bytes per job), from the README's sizing table."""
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[\d,]+", cells[3]):
            rows[cells[0]] = (float(cells[2]), int(cells[3].replace(",", "")))
    return rows


def test_the_readme_sizing_table_matches_a_measurement() -> None:
    rows = {row.what: row for row in measure(500)}
    table = documented()
    assert set(table) == set(rows), "regenerate with: python -m benchmarks.redis_sizing"
    for what, (keys, size) in table.items():
        measured = rows[what]
        assert measured.keys_per_job == keys, what
        # Hash tables grow in steps, so small runs read a little high or low.
        assert measured.bytes_per_job == pytest.approx(size, rel=0.3), what
