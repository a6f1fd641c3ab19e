"""When a schedule fires: five-field cron in an IANA time zone, or a fixed interval.

Slots are aware UTC datetimes on whole seconds. Two beats, a restarted beat
and ``startproc schedules list`` must compute *the same* slots, because a
slot's time is part of its idempotency key; so nothing here depends on when
beat started or on local state.

Cron is matched on the zone's wall clock by `cronsim` (naive datetimes, so the
library never has to guess about DST), and each matching wall time is mapped
to one instant here, with `zoneinfo`:

* a wall time the zone skips (spring forward, e.g. 02:30 on the last Sunday of
  March in Europe/Prague) fires **once, at the first instant after the gap**
  (03:00 local); several skipped wall times collapse into that one slot;
* a wall time the zone repeats (fall back) fires **once, at its first
  occurrence** (02:30 CEST, not again at 02:30 CET).

So a daily job runs exactly once every day, DST or not. Intervals (``every``)
are counted from the Unix epoch in UTC (``15m`` fires at :00, :15, :30, :45
UTC), which needs no time zone and no memory of a start time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_GRACE = timedelta(seconds=60)
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Timing(Protocol):
    """What the scheduler needs from a cron or an interval."""

    @property
    def zone(self) -> ZoneInfo:
        """The zone templates show the slot in (UTC for intervals)."""
        ...

    @property
    def grace(self) -> timedelta:
        """How late a slot may be started and still count as on time (not missed)."""
        ...

    def after(self, moment: datetime) -> Iterator[datetime]:
        """Slots strictly after ``moment``, ascending, forever."""
        ...

    def before(self, moment: datetime) -> Iterator[datetime]:
        """Slots at or before ``moment``, descending."""
        ...

    def describe(self) -> str: ...


def parse_duration(text: str) -> int:
    """``"30s"``, ``"15m"``, ``"1h30m"``, ``"1d"`` -> seconds; ValueError otherwise."""
    compact = text.replace(" ", "")
    if not compact or _DURATION.sub("", compact):
        raise ValueError(
            f"{text!r} is not a duration; use numbers with a unit s, m, h or d: '15m', '1h30m'"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION.findall(compact))
    if seconds < 1:
        raise ValueError(f"{text!r}: the interval must be at least 1s")
    return seconds


def format_duration(seconds: int) -> str:
    """The inverse of `parse_duration`: 5400 -> ``"1h30m"``."""
    parts = []
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class Every:
    """A fixed interval, aligned to the Unix epoch so every process agrees on the slots."""

    seconds: int
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    @property
    def step(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    @property
    def grace(self) -> timedelta:
        # Never wider than one interval: a slot one interval late is a missed one.
        return min(MAX_GRACE, self.step)

    def after(self, moment: datetime) -> Iterator[datetime]:
        n = (moment.astimezone(UTC) - EPOCH) // self.step + 1
        while True:
            yield EPOCH + n * self.step
            n += 1

    def before(self, moment: datetime) -> Iterator[datetime]:
        n = (moment.astimezone(UTC) - EPOCH) // self.step
        while True:
            yield EPOCH + n * self.step
            n -= 1

    def describe(self) -> str:
        return f"every {format_duration(self.seconds)}"


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression read on the wall clock of ``zone``."""

    expression: str
    zone: ZoneInfo

    def __post_init__(self) -> None:
        validate_cron(self.expression)

    @property
    def grace(self) -> timedelta:
        return MAX_GRACE

    def after(self, moment: datetime) -> Iterator[datetime]:
        moment = moment.astimezone(UTC)
        start = _wall(moment, self.zone) - _margin(moment, self.zone)
        last = moment
        for wall in CronSim(self.expression, start):
            instant = resolve(wall, self.zone)
            if instant > last:  # resolve() never goes backwards, so this de-duplicates
                yield instant
                last = instant

    def before(self, moment: datetime) -> Iterator[datetime]:
        moment = moment.astimezone(UTC)
        start = _wall(moment, self.zone) + _margin(moment, self.zone)
        last = moment + timedelta(microseconds=1)
        for wall in CronSim(self.expression, start, reverse=True):
            instant = resolve(wall, self.zone)
            if instant < last:
                yield instant
                last = instant

    def describe(self) -> str:
        return f"cron {self.expression} {self.zone.key}"


def validate_cron(expression: str) -> None:
    """Raise ValueError with cronsim's reason for anything but a valid five-field cron."""
    if len(expression.split()) != 5:
        raise ValueError(
            f"{expression!r} is not a five-field cron expression "
            "(minute hour day-of-month month day-of-week)"
        )
    try:
        next(CronSim(expression, datetime(2000, 1, 1)))
    except (CronSimError, StopIteration) as exc:
        raise ValueError(f"{expression!r} is not a valid cron expression: {exc}") from None


def resolve(wall: datetime, zone: ZoneInfo) -> datetime:
    """The one UTC instant a naive wall-clock time fires at (see the module docstring)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(first, zone) == wall:
        return first  # exists; in a repeated hour fold=0 is the first occurrence
    return _gap_end(wall, zone)


def _gap_end(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant after the gap ``wall`` falls into.

    In a gap, fold=1 maps with the offset after the change (an instant before
    it) and fold=0 with the offset before (an instant after it): the change
    lies between, and a binary search on whole seconds finds it.
    """
    lo = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    hi = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    lo, hi = min(lo, hi), max(lo, hi)
    offset = lo.astimezone(zone).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) // 2
        if mid.astimezone(zone).utcoffset() == offset:
            lo = mid
        else:
            hi = mid
    return hi.replace(microsecond=0)


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None, fold=0)


def _margin(moment: datetime, zone: ZoneInfo) -> timedelta:
    """How far wall-clock iteration must start beyond ``moment`` to see every slot.

    In a repeated hour the wall clock of an instant is behind wall times that
    already fired; three hours covers every DST rule, and a larger jump of the
    offset nearby (a zone changing its standard time) widens it.
    """
    day = timedelta(days=1)
    before = moment.astimezone(zone).utcoffset() or timedelta()
    shift = abs((((moment - day).astimezone(zone).utcoffset()) or timedelta()) - before)
    shift = max(shift, abs(((moment + day).astimezone(zone).utcoffset() or timedelta()) - before))
    return timedelta(hours=3) + shift


def iso_utc(moment: datetime) -> str:
    """``2026-11-25T02:00:00Z``: how slots are written in keys, templates and output."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
