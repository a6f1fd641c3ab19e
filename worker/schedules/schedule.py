"""The schedules file (``STARTPROC_SCHEDULES``), what one slot starts, and catch-up.

A schedule is a start job with a clock attached. Each *slot* (one fire time)
becomes an ordinary start job whose idempotency key is derived from the
schedule name and the slot time, ``schedule:<name>:<slot in UTC>``, and whose
job id is a UUID derived from that key. Everything that could send a slot
twice -- two beats running by mistake, a beat restarted after it published
but before it recorded the slot, a redelivered message -- therefore sends the
*same* job: the worker finds the job id already decided, or the ledger finds
the key already started, and no second instance is created. The rendered job
depends only on the slot (never on when beat ran), so a re-sent slot also has
the same payload and is never a ``conflict``.

File format (errors name the file, the schedule and the key)::

    [schedules.nightly-close]            # name: [a-z0-9][a-z0-9_-]*
    cron = "0 6 1 * *"                   # five-field cron ...
    timezone = "Europe/Prague"           # ... on this zone's wall clock (default UTC)
    # every = "15m"                      # or a fixed interval (s, m, h, d), epoch-aligned, UTC
    target = "orders"                    # a target of the targets file
    process = "month-end-close"
    version = 3                          # optional, as in a start job
    business_key = "close-{{ date }}"    # optional template
    tenant_id = "acme"                   # optional
    enabled = true                       # default true
    catch_up = "latest"                  # skip (default) | latest | all
    catch_up_limit = 10                  # with "all": start at most this many missed slots
    [schedules.nightly-close.variables]  # templates, see worker.schedules.template
    period = "{{ date }}"
    [schedules.nightly-close.options]    # engine options, as in a start job (templates too)

Catch-up (`plan`): a slot is *missed* when beat gets to it more than the
grace period late (60 s; one interval for shorter ``every`` schedules), e.g.
because beat was down. On-time slots always fire. Missed slots: ``skip``
starts none, ``latest`` starts the newest one, ``all`` starts them oldest
first, at most ``catch_up_limit`` (the newest ones). A schedule beat has never
seen (no cursor in Redis) has nothing missed: only an on-time slot fires.
"""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError

from worker.errors import ConfigError, InvalidJob
from worker.models import TARGET_NAME, Job
from worker.schedules.template import check_value, render_value, slot_context
from worker.schedules.timing import Cron, Every, Timing, iso_utc, parse_duration, validate_cron
from worker.validation import describe, did_you_mean, named_tables

CatchUp = Literal["skip", "latest", "all"]
CATCH_UP: tuple[CatchUp, ...] = ("skip", "latest", "all")
DEFAULT_CATCH_UP_LIMIT = 10
MAX_CATCH_UP_LIMIT = 1000
MAX_COUNTED = 100_000  # missed slots counted for the log line before counting stops
# Fixed forever: job ids of slots already fired must stay the same across releases.
JOB_ID_NAMESPACE = uuid.UUID("6f1c1d1e-5c59-4b0e-9a57-3d0c8a6f2b11")
_SAMPLE_SLOT = datetime(2026, 1, 1, 6, 0, tzinfo=UTC)


def slot_key(name: str, slot: datetime) -> str:
    """The idempotency key of one slot: ``schedule:<name>:<slot ISO UTC>``."""
    return f"schedule:{name}:{iso_utc(slot)}"


def slot_job_id(key: str) -> str:
    """A UUID from the slot's key: every copy of a slot is one job to the worker."""
    return str(uuid.uuid5(JOB_ID_NAMESPACE, key))


@dataclass(frozen=True)
class Schedule:
    """One validated ``[schedules.NAME]`` table."""

    name: str
    timing: Timing
    target: str
    process: str
    version: int | None = None
    variables: Mapping[str, Any] = field(default_factory=dict)
    business_key: str | None = None
    tenant_id: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True
    catch_up: CatchUp = "skip"
    catch_up_limit: int = DEFAULT_CATCH_UP_LIMIT

    @property
    def zone(self) -> ZoneInfo:
        return self.timing.zone

    def next_slots(self, moment: datetime, count: int) -> list[datetime]:
        return list(islice(self.timing.after(moment), count))

    def latest_slot(self, moment: datetime) -> datetime:
        return next(self.timing.before(moment))

    def is_slot(self, moment: datetime) -> bool:
        return self.latest_slot(moment) == moment

    def job(self, slot: datetime, *, job_id: str | None = None) -> dict[str, Any]:
        """The start job of ``slot`` (CONTRACT section 3), ready for `producer.prepare`."""
        context = slot_context(self.name, slot, self.zone)
        key = slot_key(self.name, slot)
        job: dict[str, Any] = {
            "target": self.target,
            "process": self.process,
            "variables": render_value(dict(self.variables), context),
            "options": render_value(dict(self.options), context),
            "idempotency_key": key,
            "job_id": job_id or slot_job_id(key),
            "schedule": self.name,
        }
        if self.version is not None:
            job["version"] = self.version
        if self.business_key is not None:
            job["business_key"] = render_value(self.business_key, context)
        if self.tenant_id is not None:
            job["tenant_id"] = self.tenant_id
        return job


# ---------------------------------------------------------------- catch-up


@dataclass(frozen=True)
class Plan:
    """What to do now: slots to start (oldest first), missed slots dropped, the new cursor."""

    fire: tuple[datetime, ...]
    skipped: int
    cursor: datetime


def plan(schedule: Schedule, cursor: datetime | None, now: datetime) -> Plan:
    """Decide the slots in (cursor, now]; ``cursor`` is how far slots were already decided.

    Pure: the caller owns the clock and the cursor, so tests freeze both.
    """
    grace = schedule.timing.grace
    if cursor is None:  # never seen: only an on-time slot, no history to catch up
        cursor = now - grace
    if cursor >= now:
        return Plan((), 0, cursor)
    if not schedule.enabled:  # decided as "not started", so enabling it later is a fresh start
        return Plan((), 0, now)
    keep = {"skip": 0, "latest": 1, "all": schedule.catch_up_limit}[schedule.catch_up]
    on_time: list[datetime] = []
    missed: list[datetime] = []
    skipped = 0
    for slot in schedule.timing.before(now):
        if slot <= cursor or skipped >= MAX_COUNTED:
            break
        if now - slot <= grace:
            on_time.append(slot)
        elif len(missed) < keep:
            missed.append(slot)
        else:
            skipped += 1
    return Plan(tuple(sorted(missed + on_time)), skipped, now)


# ---------------------------------------------------------------- the file


class _Spec(BaseModel):
    """The keys of one table and their types; the rest is checked in `_problems`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: StrictStr | None = None
    timezone: StrictStr | None = None
    every: StrictStr | None = None
    target: StrictStr
    process: StrictStr | StrictInt
    version: StrictInt | None = None
    variables: dict[str, Any] = {}
    business_key: StrictStr | None = None
    tenant_id: StrictStr | None = None
    options: dict[str, Any] = {}
    enabled: StrictBool = True
    catch_up: StrictStr = "skip"
    catch_up_limit: StrictInt | None = None


def _timing_problems(raw: Mapping[str, Any], where: str) -> list[str]:
    cron, every, zone = raw.get("cron"), raw.get("every"), raw.get("timezone")
    if cron is None and every is None:
        return [f"{where}: needs either cron (with timezone) or every"]
    if cron is not None and every is not None:
        return [f"{where}: give either cron or every, not both"]
    problems = []
    if isinstance(cron, str):
        try:
            validate_cron(cron)
        except ValueError as exc:
            problems.append(f"{where}.cron: {exc}")
    if isinstance(every, str):
        try:
            parse_duration(every)
        except ValueError as exc:
            problems.append(f"{where}.every: {exc}")
        if zone is not None:
            problems.append(f"{where}.timezone: only used with cron (every counts in UTC)")
    elif isinstance(zone, str):
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"{where}.timezone: unknown IANA time zone {zone!r}{_zone_hint(zone)}")
    return problems


def _zone_hint(zone: str) -> str:
    """Zone names are case-sensitive: 'utc' -> 'UTC', then the closest spelling."""
    zones = available_timezones()
    by_case = {z.lower(): z for z in zones}
    if zone.lower() in by_case:
        return f" (did you mean {by_case[zone.lower()]!r}?)"
    return did_you_mean(zone, zones)


def _problems(name: str, raw: Mapping[str, Any], target_names: Collection[str] | None) -> list[str]:
    """Every problem of one table, each ``schedules.NAME.key: reason``."""
    where = f"schedules.{name}"
    problems: list[str] = []
    try:
        _Spec.model_validate(raw)
    except ValidationError as exc:
        problems.extend(describe(exc, _Spec.model_fields, prefix=where))
    problems.extend(_timing_problems(raw, where))
    target = raw.get("target")
    if isinstance(target, str) and target_names is not None and target not in target_names:
        hint = did_you_mean(target, target_names)
        problems.append(f"{where}.target: {target!r} is not in the targets file{hint}")
    catch_up = raw.get("catch_up", "skip")
    if isinstance(catch_up, str) and catch_up not in CATCH_UP:
        hint = did_you_mean(catch_up, CATCH_UP)
        problems.append(f"{where}.catch_up: {catch_up!r}{hint}; one of {', '.join(CATCH_UP)}")
    limit = raw.get("catch_up_limit")
    if isinstance(limit, int) and not 1 <= limit <= MAX_CATCH_UP_LIMIT:
        problems.append(f"{where}.catch_up_limit: must be 1..{MAX_CATCH_UP_LIMIT}")
    if limit is not None and catch_up != "all":
        problems.append(f"{where}.catch_up_limit: only used with catch_up = 'all'")
    for key in ("variables", "options", "business_key"):
        problems.extend(check_value(raw.get(key), f"{where}.{key}"))
    return problems


def _build(name: str, raw: Mapping[str, Any]) -> Schedule:
    spec = _Spec.model_validate(raw)
    timing: Timing = (
        Cron(spec.cron, ZoneInfo(spec.timezone or "UTC"))
        if spec.cron is not None
        else Every(parse_duration(str(spec.every)))
    )
    return Schedule(
        name=name,
        timing=timing,
        target=spec.target,
        process=str(spec.process),
        version=spec.version,
        variables=spec.variables,
        business_key=spec.business_key,
        tenant_id=spec.tenant_id,
        options=spec.options,
        enabled=spec.enabled,
        catch_up=cast(CatchUp, spec.catch_up),
        catch_up_limit=spec.catch_up_limit or DEFAULT_CATCH_UP_LIMIT,
    )


def parse_schedules(
    data: Mapping[str, Any],
    source: str = "schedules",
    target_names: Collection[str] | None = None,
) -> list[Schedule]:
    """Validate a parsed file; raise one `ConfigError` listing every problem.

    ``target_names`` None skips the target check (``schedules list`` on a
    machine without the targets' secrets); beat and ``schedules check`` pass them.
    """
    tables, problems = named_tables(data, "schedules", "schedule", TARGET_NAME)
    schedules: list[Schedule] = []
    for name, raw in tables.items():
        if not isinstance(raw, dict):
            problems.append(f"schedules.{name}: expected a table")
            continue
        found = _problems(name, raw, target_names)
        if not found:
            schedule = _build(name, raw)
            found = _job_problems(schedule)
            schedules.append(schedule)
        problems.extend(found)
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
    return schedules


def _job_problems(schedule: Schedule) -> list[str]:
    """The job a slot makes must be a valid start job (sizes, version range, ...)."""
    try:
        Job.parse(schedule.job(_SAMPLE_SLOT))
    except InvalidJob as exc:
        return [f"schedules.{schedule.name}: the start job it makes is invalid: {exc.message}"]
    return []


def load_schedules(path: Path, target_names: Collection[str] | None = None) -> list[Schedule]:
    """Read and validate the schedules file; `ConfigError` names the file, schedule and key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: schedules file not found (set STARTPROC_SCHEDULES)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_schedules(data, str(path), target_names)
