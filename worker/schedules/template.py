"""The template language of schedules: ``{{ name }}`` and ``{{ name | filter }}``, nothing else.

A schedules file is configuration, so its templates must not be a way to
run code or read the environment: there are no expressions, attribute
access, loops or includes, only a fixed set of names describing the slot and
a fixed set of string filters. Everything is checked when the file is loaded
(an unknown name gets a "did you mean"), so rendering at fire time cannot fail.

Names (all strings, all derived from the slot, never from the time beat ran,
so a slot re-fired after a restart renders the same job):

    schedule            the schedule's name
    scheduled_at        the slot in UTC, ISO-8601: 2026-11-25T02:00:00Z
    scheduled_at_local  the slot in the schedule's zone: 2026-11-25T03:00:00+01:00
    date                the slot's date in the schedule's zone: 2026-11-25
    time                the slot's time of day in the schedule's zone: 03:00:00
    timezone            the schedule's zone: Europe/Prague
    epoch               the slot as Unix seconds: 1795572000

Filters: ``upper``, ``lower``, ``compact`` (drops ``-`` and ``:``, for keys:
``{{ scheduled_at | compact }}`` -> ``20261125T020000Z``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from worker.schedules.timing import iso_utc
from worker.validation import did_you_mean

NAMES = ("schedule", "scheduled_at", "scheduled_at_local", "date", "time", "timezone", "epoch")
FILTERS: dict[str, Callable[[str], str]] = {
    "upper": str.upper,
    "lower": str.lower,
    "compact": lambda text: text.replace("-", "").replace(":", ""),
}
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")

Part = str | tuple[str, tuple[str, ...]]  # literal text | (name, filters)


class TemplateError(ValueError):
    """A template that cannot be compiled; the message names the problem."""


@lru_cache(maxsize=1024)
def compile_template(text: str) -> tuple[Part, ...]:
    """Split ``text`` into literals and placeholders, rejecting anything unknown."""
    parts: list[Part] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        parts.append(_literal(text[pos : match.start()]))
        parts.append(_placeholder(match.group(1)))
        pos = match.end()
    parts.append(_literal(text[pos:]))
    return tuple(p for p in parts if p != "")


def _literal(text: str) -> str:
    if "{{" in text:
        raise TemplateError("'{{' is not closed by '}}'")
    if "}}" in text:
        raise TemplateError("'}}' without an opening '{{'")
    return text


def _placeholder(inner: str) -> tuple[str, tuple[str, ...]]:
    name, *filters = (piece.strip() for piece in inner.split("|"))
    if not _IDENT.match(name):
        raise TemplateError(
            f"'{{{{{inner}}}}}' is not a name; only {{{{ name }}}} or {{{{ name | filter }}}}"
        )
    if name not in NAMES:
        raise TemplateError(
            f"unknown template name {name!r}{did_you_mean(name, NAMES)}; one of {', '.join(NAMES)}"
        )
    for flt in filters:
        if flt not in FILTERS:
            raise TemplateError(
                f"unknown filter {flt!r}{did_you_mean(flt, FILTERS)}; one of {', '.join(FILTERS)}"
            )
    return name, tuple(filters)


def render(text: str, context: Mapping[str, str]) -> str:
    out = []
    for part in compile_template(text):
        if isinstance(part, str):
            out.append(part)
            continue
        name, filters = part
        value = context[name]
        for flt in filters:
            value = FILTERS[flt](value)
        out.append(value)
    return "".join(out)


def render_value(value: Any, context: Mapping[str, str]) -> Any:
    """Render every string inside a TOML value; numbers and booleans stay constants."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, dict):
        return {key: render_value(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render_value(item, context) for item in value]
    return value


def check_value(value: Any, where: str) -> list[str]:
    """``where: reason`` for every string in ``value`` that is not a valid template."""
    if isinstance(value, str):
        try:
            compile_template(value)
        except TemplateError as exc:
            return [f"{where}: {exc}"]
        return []
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in check_value(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in check_value(item, f"{where}[{i}]")]
    return []


def slot_context(schedule: str, slot: datetime, zone: ZoneInfo) -> dict[str, str]:
    """The names a template may use, for one slot."""
    local = slot.astimezone(zone)
    return {
        "schedule": schedule,
        "scheduled_at": iso_utc(slot),
        "scheduled_at_local": local.isoformat(timespec="seconds"),
        "date": local.date().isoformat(),
        "time": local.strftime("%H:%M:%S"),
        "timezone": zone.key,
        "epoch": str(int(slot.timestamp())),
    }
