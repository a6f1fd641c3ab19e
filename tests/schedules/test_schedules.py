"""Scheduled starts without Celery: time math (DST), templates, the file, catch-up, firing.

Every clock here is frozen: plans and ticks take ``now`` from the test, so
nothing sleeps and DST days are tested on the day they happen.
"""

from __future__ import annotations

import json
import tomllib
from base64 import b64decode
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise, takewhile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from typer.testing import CliRunner

from worker.config import settings
from worker.errors import ConfigError
from worker.models import Job
from worker.schedules.fire import Firer
from worker.schedules.schedule import (
    Schedule,
    load_schedules,
    parse_schedules,
    plan,
    slot_job_id,
    slot_key,
)
from worker.schedules.state import ScheduleState
from worker.schedules.template import TemplateError, compile_template, render, slot_context
from worker.schedules.timing import Cron, Every, iso_utc, parse_duration, resolve

REPO = Path(__file__).resolve().parents[2]
PRAGUE = ZoneInfo("Europe/Prague")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *rest: int) -> datetime:
    second, micro = (*rest, 0, 0)[:2]
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def first(iterator: Iterator[datetime], count: int) -> list[str]:
    return [iso_utc(slot) for slot in islice(iterator, count)]


def local(slot: datetime, zone: ZoneInfo = PRAGUE) -> str:
    return slot.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


# ---------------------------------------------------------------- cron and DST


def test_spring_forward_a_skipped_slot_fires_once_at_the_end_of_the_gap() -> None:
    # 2026-03-29 in Prague: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    slots = list(islice(Cron("30 2 * * *", PRAGUE).after(utc(2026, 3, 27, 12)), 3))
    assert [local(s) for s in slots] == [
        "2026-03-28 02:30 CET",
        "2026-03-29 03:00 CEST",
        "2026-03-30 02:30 CEST",
    ]
    assert iso_utc(slots[1]) == "2026-03-29T01:00:00Z"


def test_spring_forward_several_skipped_slots_collapse_into_one() -> None:
    cron = Cron("*/30 * * * *", PRAGUE)
    slots = list(islice(cron.after(utc(2026, 3, 28, 23, 45)), 5))
    assert [local(s)[11:] for s in slots] == [
        "01:00 CET",
        "01:30 CET",
        "03:00 CEST",  # 02:00 and 02:30 do not exist; 03:00 itself is a slot too: once
        "03:30 CEST",
        "04:00 CEST",
    ]


def test_fall_back_a_repeated_slot_fires_once_at_its_first_occurrence() -> None:
    # 2026-10-25 in Prague: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    slots = list(islice(Cron("30 2 * * *", PRAGUE).after(utc(2026, 10, 24, 12)), 2))
    assert [local(s) for s in slots] == ["2026-10-25 02:30 CEST", "2026-10-26 02:30 CET"]
    assert iso_utc(slots[0]) == "2026-10-25T00:30:00Z"


def test_fall_back_hourly_skips_the_second_pass_of_the_repeated_hour() -> None:
    cron = Cron("0 * * * *", PRAGUE)
    assert first(cron.after(utc(2026, 10, 24, 22, 30)), 4) == [
        "2026-10-24T23:00:00Z",  # 01:00 CEST
        "2026-10-25T00:00:00Z",  # 02:00 CEST (02:00 CET at 01:00Z is the same wall time)
        "2026-10-25T02:00:00Z",  # 03:00 CET
        "2026-10-25T03:00:00Z",
    ]


def test_starting_inside_the_repeated_hour_does_not_fire_its_wall_times_again() -> None:
    second_pass = utc(2026, 10, 25, 1, 10)  # 02:10 CET, after 02:xx CEST already fired
    assert first(Cron("*/20 * * * *", PRAGUE).after(second_pass), 2) == [
        "2026-10-25T02:00:00Z",
        "2026-10-25T02:20:00Z",
    ]


@pytest.mark.parametrize(
    ("expression", "zone", "start", "days"),
    [
        ("*/30 * * * *", "Europe/Prague", utc(2026, 3, 28), 2),
        ("*/30 * * * *", "Europe/Prague", utc(2026, 10, 24), 2),
        ("15 2 * * *", "America/New_York", utc(2026, 3, 6), 3),
        ("0,45 1-3 * * *", "America/New_York", utc(2026, 10, 30), 3),
        ("*/10 1-3 * * *", "Australia/Lord_Howe", utc(2026, 4, 3), 3),  # a 30-minute shift
        ("0 6 1 * *", "Europe/Prague", utc(2026, 1, 1), 100),
    ],
)
def test_backwards_and_forwards_iteration_agree(
    expression: str, zone: str, start: datetime, days: int
) -> None:
    """`before` (used for catch-up) must see exactly the slots `after` (used to fire) sees."""
    cron = Cron(expression, ZoneInfo(zone))
    end = start + timedelta(days=days)
    forward = list(takewhile(lambda s: s <= end, cron.after(start)))
    backward = list(takewhile(lambda s: s > start, cron.before(end)))
    assert forward and forward == backward[::-1]
    assert all(a < b for a, b in pairwise(forward))


def test_resolve_keeps_ordinary_wall_times() -> None:
    assert resolve(datetime(2026, 7, 1, 6, 0), PRAGUE) == utc(2026, 7, 1, 4, 0)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * * *", "five-field"),
        ("0 0 * * * *", "five-field"),
        ("@daily", "five-field"),
        ("61 * * * *", "Bad minute"),
        ("0 0 31 2 *", "day-of-month"),
    ],
)
def test_bad_cron_expressions_are_refused(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Cron(expression, PRAGUE)


# ---------------------------------------------------------------- every


def test_every_is_aligned_to_the_epoch_so_all_processes_agree() -> None:
    every = Every(900)
    assert first(every.after(utc(2026, 1, 1, 10, 7, 3)), 3) == [
        "2026-01-01T10:15:00Z",
        "2026-01-01T10:30:00Z",
        "2026-01-01T10:45:00Z",
    ]
    assert first(every.after(utc(2026, 1, 1, 10, 15)), 1) == ["2026-01-01T10:30:00Z"]
    assert first(every.before(utc(2026, 1, 1, 10, 15)), 2) == [
        "2026-01-01T10:15:00Z",
        "2026-01-01T10:00:00Z",
    ]
    assert Every(1).grace == timedelta(seconds=1) and Every(3600).grace == timedelta(seconds=60)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("1d", 86400)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "15x", "m15", "0s", "1.5h", "-1m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# ---------------------------------------------------------------- templates


def test_template_names_describe_the_slot_in_the_schedules_zone() -> None:
    context = slot_context("close", utc(2026, 3, 29, 1, 0), PRAGUE)
    assert context == {
        "schedule": "close",
        "scheduled_at": "2026-03-29T01:00:00Z",
        "scheduled_at_local": "2026-03-29T03:00:00+02:00",
        "date": "2026-03-29",
        "time": "03:00:00",
        "timezone": "Europe/Prague",
        "epoch": "1774746000",
    }
    text = "{{schedule|upper}}-{{ scheduled_at | compact }}-{{ date }} at {{ time|compact }}"
    assert render(text, context) == "CLOSE-20260329T010000Z-2026-03-29 at 030000"
    assert render("no placeholders { here }", context) == "no placeholders { here }"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{{ scheduled }}", "unknown template name 'scheduled'"),
        ("{{ dat }}", "did you mean 'date'"),
        ("{{ date | uper }}", "unknown filter 'uper' (did you mean 'upper'?)"),
        ("{{ date ", "not closed"),
        ("date }}", "without an opening"),
        ("{{ 1 + 1 }}", "not a name"),
        ("{{ schedule.__class__ }}", "not a name"),
        ("{{ __import__('os') }}", "not a name"),
        ("{{ HOME }}", "not a name"),
    ],
)
def test_templates_are_only_names_and_filters(text: str, reason: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(text)
    assert reason in str(caught.value)


# ---------------------------------------------------------------- the file


def example_target_names() -> list[str]:
    raw = tomllib.loads((REPO / "config" / "targets.example.toml").read_text(encoding="utf-8"))
    return list(raw["targets"])


def test_the_example_file_is_valid_against_the_example_targets() -> None:
    schedules = load_schedules(REPO / "config" / "schedules.example.toml", example_target_names())
    by_name = {s.name: s for s in schedules}
    assert set(by_name) == {"nightly-reconciliation", "sla-sweep", "month-end-close"}
    assert by_name["month-end-close"].enabled is False
    assert by_name["month-end-close"].catch_up_limit == 3


def parse(text: str, targets: list[str] | None = None) -> list[Schedule]:
    return parse_schedules(tomllib.loads(text), "s.toml", targets or ["orders", "cases"])


GOOD = """
[schedules.close]
cron = "0 6 1 * *"
timezone = "Europe/Prague"
target = "orders"
process = "month-end-close"
version = 2
business_key = "close-{{ date }}"
tenant_id = "acme"
[schedules.close.variables]
period = "{{ date }}"
at = "{{ scheduled_at }}"
count = 3
nested = { when = "{{ time }}", flags = [true, "{{ schedule }}"] }
[schedules.close.options]
tags = ["{{ schedule }}"]
"""


def test_a_slot_becomes_a_valid_start_job_with_a_key_from_name_and_slot() -> None:
    (schedule,) = parse(GOOD)
    slot = schedule.next_slots(utc(2026, 3, 15), 1)[0]
    job = schedule.job(slot)
    assert job == {
        "target": "orders",
        "process": "month-end-close",
        "version": 2,
        "variables": {
            "period": "2026-04-01",
            "at": "2026-04-01T04:00:00Z",
            "count": 3,
            "nested": {"when": "06:00:00", "flags": [True, "close"]},
        },
        "options": {"tags": ["close"]},
        "business_key": "close-2026-04-01",
        "tenant_id": "acme",
        "idempotency_key": "schedule:close:2026-04-01T04:00:00Z",
        "job_id": slot_job_id("schedule:close:2026-04-01T04:00:00Z"),
        "schedule": "close",
    }
    assert Job.parse(job).schedule == "close"
    # The same slot is the same job (id, key and payload) whenever and wherever it is rendered.
    assert schedule.job(slot) == job
    assert slot_key("close", slot) == job["idempotency_key"]
    other = schedule.next_slots(slot, 1)[0]
    assert schedule.job(other)["job_id"] != job["job_id"]
    assert slot_job_id(slot_key("other", slot)) != job["job_id"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('crn = "0 6 * * *"', "s.toml: schedules.bad.crn: unknown field (did you mean 'cron'?)"),
        ("", "s.toml: schedules.bad: needs either cron (with timezone) or every"),
        ('cron = "0 6 * * *"\nevery = "1h"', "schedules.bad: give either cron or every, not both"),
        ('cron = "0 25 * * *"', "s.toml: schedules.bad.cron: '0 25 * * *' is not a valid cron"),
        ('every = "15 min"', "s.toml: schedules.bad.every: '15 min' is not a duration"),
        ('every = "1h"\ntimezone = "UTC"', "schedules.bad.timezone: only used with cron"),
        (
            'cron = "0 6 * * *"\ntimezone = "Europe/Prag"',
            "schedules.bad.timezone: unknown IANA time zone 'Europe/Prag' "
            "(did you mean 'Europe/Prague'?)",
        ),
        (
            'cron = "0 6 * * *"\ntimezone = "utc"',
            "schedules.bad.timezone: unknown IANA time zone 'utc' (did you mean 'UTC'?)",
        ),
        (
            'cron = "0 6 * * *"\ntimezone = "../../etc/passwd"',
            "schedules.bad.timezone: unknown IANA time zone",
        ),
        (
            'every = "1h"\ncatch_up = "lastest"',
            "schedules.bad.catch_up: 'lastest' (did you mean 'latest'?)",
        ),
        ('every = "1h"\ncatch_up_limit = 5', "schedules.bad.catch_up_limit: only used with"),
        (
            'every = "1h"\ncatch_up = "all"\ncatch_up_limit = 0',
            "schedules.bad.catch_up_limit: must be 1..1000",
        ),
        ('every = "1h"\nenabled = "yes"', "schedules.bad.enabled: Input should be a valid boolean"),
        (
            'every = "1h"\nbusiness_key = "k-{{ scheduled }}"',
            "schedules.bad.business_key: unknown template name 'scheduled'",
        ),
        (
            'every = "1h"\n[schedules.bad.variables]\nx = ["{{ date | nope }}"]',
            "schedules.bad.variables.x[0]: unknown filter 'nope'",
        ),
        ('every = "1h"\nversion = 0', "schedules.bad: the start job it makes is invalid: version"),
    ],
)
def test_every_error_names_file_schedule_and_key(table: str, message: str) -> None:
    head = '[schedules.bad]\ntarget = "orders"\nprocess = "p"\n'
    with pytest.raises(ConfigError) as caught:
        parse(head + table)
    assert message in str(caught.value), str(caught.value)


def test_unknown_target_gets_a_suggestion_and_all_problems_come_at_once() -> None:
    text = """
[schedules.a]
every = "1h"
target = "ordrs"
process = "p"
[schedules.b]
every = "1h"
target = "orders"
proces = "p"
[schedule]
x = 1
"""
    with pytest.raises(ConfigError) as caught:
        parse(text)
    lines = str(caught.value).splitlines()
    assert (
        "s.toml: schedules.a.target: 'ordrs' is not in the targets file (did you mean 'orders'?)"
        in lines
    )
    assert "s.toml: schedules.b.proces: unknown field (did you mean 'process'?)" in lines
    assert "s.toml: schedules.b.process: required field is missing" in lines
    assert "s.toml: schedule: unknown top-level key (did you mean 'schedules'?)" in lines


def test_names_files_and_toml_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"schedules.Bad Name: schedule names match"):
        parse('[schedules."Bad Name"]\nevery = "1h"\ntarget = "orders"\nprocess = "p"')
    with pytest.raises(ConfigError, match="schedules file not found"):
        load_schedules(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[schedules.x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.toml: not valid TOML"):
        load_schedules(broken)
    assert parse("") == []


def test_without_target_names_the_target_is_not_checked() -> None:
    text = '[schedules.x]\nevery = "1h"\ntarget = "elsewhere"\nprocess = "p"'
    assert parse_schedules(tomllib.loads(text), "s.toml", None)[0].target == "elsewhere"


# ---------------------------------------------------------------- catch-up (pure)


def every_ten_minutes(**fields: Any) -> Schedule:
    return Schedule(name="m", timing=Every(600), target="orders", process="p", **fields)


NOW = utc(2026, 5, 1, 12, 0, 20)  # 20 s after the 12:00 slot
DOWN_AN_HOUR = NOW - timedelta(hours=1)  # 11:10 ... 11:50 missed, 12:00 on time


def hhmm(slots: tuple[datetime, ...]) -> list[str]:
    return [iso_utc(s)[11:16] for s in slots]


def test_a_schedule_seen_for_the_first_time_fires_only_an_on_time_slot() -> None:
    decided = plan(every_ten_minutes(catch_up="all"), None, NOW)
    assert hhmm(decided.fire) == ["12:00"] and decided.cursor == NOW
    late = plan(every_ten_minutes(catch_up="all"), None, NOW + timedelta(seconds=50))
    assert late.fire == ()  # 70 s late, and nothing before the first sight is "missed"


def test_skip_starts_no_missed_slot_but_the_on_time_one() -> None:
    decided = plan(every_ten_minutes(catch_up="skip"), DOWN_AN_HOUR, NOW)
    assert hhmm(decided.fire) == ["12:00"]
    assert decided.skipped == 5 and decided.cursor == NOW
    late = plan(every_ten_minutes(), DOWN_AN_HOUR, NOW + timedelta(seconds=50))
    assert late.fire == () and late.skipped == 6


def test_latest_starts_the_newest_missed_slot() -> None:
    late = plan(every_ten_minutes(catch_up="latest"), DOWN_AN_HOUR, NOW + timedelta(seconds=50))
    assert hhmm(late.fire) == ["12:00"] and late.skipped == 5  # 12:00 is 70 s late: missed
    on_time = plan(every_ten_minutes(catch_up="latest"), DOWN_AN_HOUR, NOW)
    assert hhmm(on_time.fire) == ["11:50", "12:00"] and on_time.skipped == 4


def test_all_starts_missed_slots_oldest_first_bounded_by_the_limit() -> None:
    decided = plan(every_ten_minutes(catch_up="all"), DOWN_AN_HOUR, NOW)
    assert hhmm(decided.fire) == ["11:10", "11:20", "11:30", "11:40", "11:50", "12:00"]
    bounded = plan(every_ten_minutes(catch_up="all", catch_up_limit=2), DOWN_AN_HOUR, NOW)
    assert hhmm(bounded.fire) == ["11:40", "11:50", "12:00"] and bounded.skipped == 3


def test_with_short_intervals_a_slot_is_missed_once_the_next_one_is_due() -> None:
    schedule = Schedule(name="s", timing=Every(1), target="orders", process="p")
    decided = plan(schedule, NOW - timedelta(seconds=5), NOW + timedelta(milliseconds=1500))
    assert [iso_utc(s) for s in decided.fire] == ["2026-05-01T12:00:21Z"]
    assert decided.skipped == 5  # 12:00:16 ... 12:00:20; 12:00:20 is 1.5 s late


def test_a_disabled_schedule_fires_nothing_and_moves_its_cursor() -> None:
    decided = plan(every_ten_minutes(enabled=False, catch_up="all"), NOW - timedelta(hours=1), NOW)
    assert decided.fire == () and decided.cursor == NOW


def test_slots_already_decided_are_never_planned_again() -> None:
    assert plan(every_ten_minutes(catch_up="all"), NOW, NOW).fire == ()
    assert plan(every_ten_minutes(catch_up="all"), NOW + timedelta(seconds=5), NOW).fire == ()


def test_catch_up_across_the_spring_forward_gap() -> None:
    (schedule,) = parse(
        '[schedules.night]\ncron = "30 2 * * *"\ntimezone = "Europe/Prague"\n'
        'target = "orders"\nprocess = "p"\ncatch_up = "all"'
    )
    decided = plan(schedule, utc(2026, 3, 27, 12), utc(2026, 3, 30, 6))
    assert [local(s) for s in decided.fire] == [
        "2026-03-28 02:30 CET",
        "2026-03-29 03:00 CEST",
        "2026-03-30 02:30 CEST",
    ]


# ---------------------------------------------------------------- firing with Redis


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Broker:
    """Collects published jobs; fails while ``down``."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.down = False

    def __call__(self, jobs: list[dict[str, Any]]) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.jobs.extend(jobs)

    def slots(self) -> list[str]:
        return [j["variables"]["at"] for j in self.jobs]


def tick_schedule(**fields: Any) -> Schedule:
    return Schedule(
        name="tick",
        timing=Every(10),
        target="orders",
        process="p",
        variables={"at": "{{ scheduled_at }}"},
        **fields,
    )


def test_ticks_fire_each_slot_once_and_say_how_long_to_sleep(redis_client: redis.Redis) -> None:
    clock, broker = Clock(utc(2026, 5, 1, 12, 0, 0, 200_000)), Broker()
    firer = Firer([tick_schedule()], ScheduleState(redis_client), broker, clock)
    assert firer.tick() == pytest.approx(9.8 + 0.001)
    assert broker.slots() == ["2026-05-01T12:00:00Z"]
    clock.advance(3)
    assert firer.tick() == pytest.approx(6.8 + 0.001) and len(broker.jobs) == 1
    clock.advance(7)
    firer.tick()
    assert broker.slots() == ["2026-05-01T12:00:00Z", "2026-05-01T12:00:10Z"]
    assert broker.jobs[0]["job_id"] == slot_job_id("schedule:tick:2026-05-01T12:00:00Z")
    assert broker.jobs[0]["enqueued_at"] and broker.jobs[0]["schedule"] == "tick"
    last = ScheduleState(redis_client).last_fired("tick")
    assert last is not None and last.job_id == broker.jobs[1]["job_id"]


def test_two_beats_on_one_redis_publish_each_slot_once(redis_client: redis.Redis) -> None:
    clock, broker = Clock(utc(2026, 5, 1, 12, 0, 0, 1)), Broker()
    beats = [Firer([tick_schedule()], ScheduleState(redis_client), broker, clock) for _ in "ab"]
    for _ in range(30):
        for beat in beats:
            beat.tick()
        clock.advance(1)
    assert len(broker.slots()) == len(set(broker.slots())) == 3


def test_a_restarted_beat_catches_up_from_the_cursor_in_redis(redis_client: redis.Redis) -> None:
    clock, broker = Clock(utc(2026, 5, 1, 12, 0, 0, 1)), Broker()
    Firer([tick_schedule(catch_up="all")], ScheduleState(redis_client), broker, clock).tick()
    clock.advance(60)  # down for a minute; a new process has no memory but Redis
    Firer([tick_schedule(catch_up="all")], ScheduleState(redis_client), broker, clock).tick()
    assert broker.slots() == [f"2026-05-01T12:0{m}:{s}0Z" for m in (0, 1) for s in range(6)][:7]
    assert len(set(broker.slots())) == 7

    clock.advance(60)
    Firer([tick_schedule(catch_up="skip")], ScheduleState(redis_client), broker, clock).tick()
    assert broker.slots()[7:] == ["2026-05-01T12:02:00Z"]  # skip: the on-time slot only


def test_a_failed_publish_keeps_the_slot_and_resends_the_same_job(
    redis_client: redis.Redis,
) -> None:
    clock, broker = Clock(utc(2026, 5, 1, 12, 0, 0, 1)), Broker()
    firer = Firer([tick_schedule(catch_up="all")], ScheduleState(redis_client), broker, clock)
    broker.down = True
    assert firer.tick() == pytest.approx(2.0, abs=0.01)  # retry soon
    assert ScheduleState(redis_client).cursor("tick") is None
    broker.down = False
    clock.advance(2)
    firer.tick()
    assert broker.slots() == ["2026-05-01T12:00:00Z"]
    assert broker.jobs[0]["job_id"] == slot_job_id("schedule:tick:2026-05-01T12:00:00Z")


def test_the_cursor_only_moves_forward(redis_client: redis.Redis) -> None:
    state = ScheduleState(redis_client)
    state.advance("x", utc(2026, 5, 1, 12), utc(2026, 5, 1, 12), "job-new")
    state.advance("x", utc(2026, 5, 1, 11), utc(2026, 5, 1, 11), "job-old")
    assert state.cursor("x") == utc(2026, 5, 1, 12)
    last = state.last_fired("x")
    assert last is not None and last.job_id == "job-new"
    assert state.cursor("never") is None and state.last_fired("never") is None


# ---------------------------------------------------------------- beat start-up


def test_beat_loads_the_file_checks_targets_and_tolerates_only_a_default_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    from worker.config import Settings
    from worker.schedules.beat import build_firer

    monkeypatch.chdir(tmp_path)  # no config/schedules.toml here
    monkeypatch.delenv("STARTPROC_SCHEDULES", raising=False)
    firer, summary = build_firer(Settings(_env_file=None, redis_url=redis_url))
    assert firer is None and "does not exist" in summary  # `startproc up` from a fresh clone

    explicit = Settings(_env_file=None, schedules=tmp_path / "gone.toml")
    with pytest.raises(ConfigError, match=r"gone\.toml: schedules file not found"):
        build_firer(explicit)

    targets = tmp_path / "targets.toml"
    targets.write_text('[targets.orders]\nengine = "camunda8"\nbase_url = "http://h"\n')
    schedules = tmp_path / "schedules.toml"
    schedules.write_text('[schedules.a]\nevery = "1h"\ntarget = "orders"\nprocess = "p"\n')
    cfg = Settings(_env_file=None, redis_url=redis_url, targets=targets, schedules=schedules)
    firer, summary = build_firer(cfg)
    assert firer is not None and [s.name for s in firer.schedules] == ["a"]
    assert summary == f"1/1 schedules from {schedules}"
    schedules.write_text('[schedules.a]\nevery = "1h"\ntarget = "order"\nprocess = "p"\n')
    with pytest.raises(ConfigError, match=r"schedules\.a\.target: 'order' is not in the targets"):
        build_firer(cfg)


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> Iterator[dict[str, Path]]:
    targets = tmp_path / "targets.toml"
    targets.write_text(
        '[targets.orders]\nengine = "camunda8"\nbase_url = "http://127.0.0.1:9"\n', encoding="utf-8"
    )
    schedules = tmp_path / "schedules.toml"
    schedules.write_text(
        '[schedules.close]\ncron = "0 6 1 * *"\ntimezone = "Europe/Prague"\n'
        'target = "orders"\nprocess = "p"\n'
        '[schedules.close.variables]\nat = "{{ scheduled_at }}"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("STARTPROC_TARGETS", str(targets))
    monkeypatch.setenv("STARTPROC_SCHEDULES", str(schedules))
    monkeypatch.setenv("STARTPROC_BROKER_URL", redis_url)
    monkeypatch.setenv("STARTPROC_REDIS_URL", redis_url)
    settings.cache_clear()
    yield {"targets": targets, "schedules": schedules}
    settings.cache_clear()


def invoke(*args: str) -> Any:
    from worker.cli.app import app

    return CliRunner().invoke(app, ["schedules", *args])


def test_list_shows_the_next_three_fire_times_in_the_zone_and_in_utc(
    cli_env: dict[str, Path], redis_client: redis.Redis
) -> None:
    ScheduleState(redis_client).advance("close", utc(2026, 4, 1, 4), utc(2026, 4, 1, 4), "j-1")
    out = invoke("list", "--json")
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.stdout)
    assert row["name"] == "close" and row["enabled"] and row["target"] == "orders"
    assert len(row["next"]) == 3
    for fire in row["next"]:
        moment = datetime.fromisoformat(fire["local"])
        assert moment.astimezone(PRAGUE).strftime("%d %H:%M") == "01 06:00"
        assert iso_utc(moment) == fire["utc"]
    assert row["last"] == {
        "slot": "2026-04-01T04:00:00Z",
        "job_id": "j-1",
        "status": "pending",
        "instance_id": None,
    }
    table = invoke("list")
    assert table.exit_code == 0 and "close" in table.output


def test_check_validates_targets_and_exits_2_on_errors(cli_env: dict[str, Path]) -> None:
    ok = invoke("check", "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["schedules"] == 1
    cli_env["schedules"].write_text(
        '[schedules.close]\nevery = "1h"\ntarget = "ordrs"\nprocess = "p"\n', encoding="utf-8"
    )
    bad = invoke("check")
    assert bad.exit_code == 2
    message = " ".join(bad.output.split())  # rich wraps long lines
    assert "schedules.close.target: 'ordrs' is not in the targets file" in message
    assert "(did you mean 'orders'?)" in message


def test_run_fires_one_slot_with_the_slots_key_and_refuses_non_slots(
    cli_env: dict[str, Path], redis_client: redis.Redis
) -> None:
    wrong = invoke("run", "close", "--at", "2026-04-01T07:00")
    assert wrong.exit_code == 2 and "not a slot of 'close'" in " ".join(wrong.output.split())
    assert invoke("run", "clos").exit_code == 2
    sent = invoke("run", "close", "--at", "2026-04-01T06:00", "--json")  # the zone's wall clock
    assert sent.exit_code == 0, sent.output
    info = json.loads(sent.stdout)
    assert info["idempotency_key"] == "schedule:close:2026-04-01T04:00:00Z"
    assert info["job_id"] != slot_job_id(info["idempotency_key"])  # a fresh job, the same key
    envelope = json.loads(str(redis_client.lindex("startproc.jobs", 0)))
    job = json.loads(b64decode(envelope["body"]))[1]["job"]
    assert job["idempotency_key"] == info["idempotency_key"]
    assert job["variables"] == {"at": "2026-04-01T04:00:00Z"} and job["schedule"] == "close"
