"""Retry-After parsing: delta-seconds and the three HTTP-date forms; garbage is None."""

from __future__ import annotations

import types
from datetime import UTC, datetime

import pytest

import worker.engines.http
from worker.engines.http import parse_retry_after

NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("7", 7.0), ("120", 120.0), (" 30 ", 30.0), ("86400", 86400.0)],
)
def test_retry_after_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("Wed, 25 Nov 2026 10:02:00 GMT", 120.0),  # IMF-fixdate
        ("Wednesday, 25-Nov-26 10:00:30 GMT", 30.0),  # RFC 850
        ("Wed Nov 25 10:00:45 2026", 45.0),  # asctime, no zone: UTC
        ("Wed, 25 Nov 2026 12:01:00 +0200", 60.0),  # numeric offset
        ("Wed, 25 Nov 2026 10:00:00 GMT", 0.0),  # now
    ],
)
def test_retry_after_http_date_in_the_future(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    "value", ["Wed, 25 Nov 2026 09:59:00 GMT", "Thu, 01 Jan 1970 00:00:00 GMT"]
)
def test_retry_after_http_date_in_the_past_is_zero(value: str) -> None:
    assert parse_retry_after(value, now=NOW) == 0.0


def test_retry_after_date_uses_the_clock_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker.engines.http, "time", types.SimpleNamespace(time=lambda: NOW))
    assert parse_retry_after("Wed, 25 Nov 2026 10:05:00 GMT") == 300.0


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "soon",
        "-5",
        "1.5",
        "1e3",
        "0x10",
        "10 seconds",
        "Wed, 32 Nov 2026 10:00:00 GMT",
        "Wed, 25 Foo 2026 10:00:00 GMT",
        "25 Nov",
        "GMT",
    ],
)
def test_garbage_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize("value", ["²", "1²", "³0"])
def test_superscript_digits_are_garbage_not_a_crash(value: str) -> None:
    assert parse_retry_after(value, now=NOW) is None
