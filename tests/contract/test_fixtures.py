"""The vendored engine documents are the ones their READMEs describe, byte for byte."""

from __future__ import annotations

import hashlib
import re

from tests.support.vendored import FIXTURES

READS_REFERENCE = re.compile(r"\.\./shared|/ \"shared\"")
ROW = re.compile(r"^\| `(?P<path>[^`]+)` \| `(?P<sha>[0-9a-f]{64})` \|$", re.MULTILINE)


def test_every_vendored_document_matches_its_recorded_checksum() -> None:
    recorded = {m["path"]: m["sha"] for m in ROW.finditer((FIXTURES / "README.md").read_text())}
    present = {
        str(p.relative_to(FIXTURES))
        for p in FIXTURES.rglob("*")
        if p.is_file() and p.name != "README.md"
    }
    assert present == set(recorded), "every vendored file is listed in tests/fixtures/README.md"
    for path, sha in recorded.items():
        assert hashlib.sha256((FIXTURES / path).read_bytes()).hexdigest() == sha, path


def test_no_test_reads_outside_the_repository() -> None:
    """A clone with nothing beside it must pass: no test names the reference folder."""
    tests = FIXTURES.parent
    offenders = [
        str(p.relative_to(tests))
        for p in tests.rglob("*.py")
        if p.name != "test_fixtures.py" and READS_REFERENCE.search(p.read_text())
    ]
    assert offenders == []
