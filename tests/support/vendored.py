"""Where the vendored engine documents live, and one way to fail when one is missing.

The tests read only what the repository holds (``tests/fixtures/``): a clone
with nothing beside it runs the whole suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SPECS = FIXTURES / "specs"
SEEDS = FIXTURES / "seeds"


def spec_path(name: str) -> Path:
    """The vendored API description ``name``; a missing file fails the test, never skips it."""
    path = SPECS / name
    if not path.is_file():
        pytest.fail(f"API description {path} is missing (see tests/fixtures/specs/README.md)")
    return path
