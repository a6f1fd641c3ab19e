"""Small pieces more than one adapter needs, so no adapter carries a copy.

Kept apart from `worker.engines.base` on purpose: base is the contract every
adapter implements, this module is a toolbox some of them use.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any, TypeGuard
from urllib.parse import quote

from worker.engines.base import KEY_VARIABLE
from worker.errors import InvalidJob
from worker.models import Job
from worker.validation import did_you_mean

ACCEPT_JSON = {"Accept": "application/json"}
"""Laravel (PM4) and Blueworks answer HTML or redirect to a login page without it."""


def segment(value: str, where: str) -> str:
    """One URL path segment: ``/``, ``?``, ``#`` and spaces in ids must not change the route.

    ``.`` and ``..`` cannot be one: the HTTP stack removes dot segments (even
    percent-encoded), so ``/tenant-id/../start`` would reach the engine as
    ``/start``, the tenant dropped.
    """
    if value in (".", ".."):
        raise InvalidJob(f"{where}: {value!r} cannot be a URL path segment")
    return quote(value, safe="")


def reject_unsupported(job: Job, engine: str, *fields: str) -> None:
    """Fail jobs that set a field the engine has no equivalent for, instead of ignoring it."""
    for name in fields:
        if getattr(job, name) is not None:
            raise InvalidJob(f"{name}: {engine} has no equivalent; leave it unset")


def numeric_process(job: Job, engine: str) -> int:
    """The job's process as the integer id engines with numeric process ids route by."""
    text = job.process_id
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 2**63:
        raise InvalidJob(f"process: {engine} process ids are positive integers, not {text!r}")
    return int(text)


def reserve_key_variable(variables: Collection[str]) -> None:
    """The key's variable name belongs to the worker: a job must not set it."""
    if KEY_VARIABLE in variables:
        raise InvalidJob(f"variables.{KEY_VARIABLE}: reserved for the idempotency key")


def check_known(names: Iterable[str], known: Iterable[str], where: str) -> None:
    """Every name an option refers to must be a variable of the job (typos fail early)."""
    choices = list(known)
    for name in names:
        if name not in choices:
            raise InvalidJob(f"{where}.{name}: no such variable{did_you_mean(name, choices)}")


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite JSON number; ``bool`` is an ``int`` in Python but never a number here."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not (isinstance(value, float) and not math.isfinite(value))


def parse_iso_datetime(value: Any, where: str) -> datetime:
    """An ISO 8601 date or date-time string; naive values are taken as UTC."""
    if not isinstance(value, str):
        raise InvalidJob(f"{where}: expected an ISO 8601 date string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidJob(f"{where}: {value[:64]!r} is not an ISO 8601 date or date-time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
