"""One record -> one start job, or the reasons it cannot be one.

Everything a worker would reject is found here, before anything is sent: the
mapping's type conversions, the `Job` model, the business key, duplicate
keys inside the file, and the engine's own rules, by calling the target's
adapter ``build_request`` (no HTTP): a TAS target refuses booleans here
exactly as the worker would.

The idempotency key is derived, never random, so a re-run of the same file
asks for the same starts: ``batch:{batch_id}:{business key}``, or with the
sha256 of the row's normalised variables in place of a missing business
key. The ledger then lets each key start at most one instance, however many
runs send it; a row whose content changed under the same business key fails
as a ``conflict`` instead of silently keeping the old instance.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import ValidationError

from worker.batch.mapping import BatchMapping
from worker.batch.source import Record
from worker.engines.base import Engine
from worker.errors import InvalidJob
from worker.models import MAX_JOB_BYTES, Job
from worker.validation import describe

MAX_BUSINESS_KEY = 255
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # built once
_AS_IN_JOB = json.JSONEncoder(default=str).encode  # json.dumps(variables, default=str)


def _sized(variables: dict[str, Any]) -> str:
    """The variables as the job's JSON carries them; `InvalidJob` past `MAX_JOB_BYTES`.

    The limit counts the compact form. The job's form (spaces, ``\\u``
    escapes) is never shorter, so the compact one is only measured when
    the job's form is over the limit.
    """
    text = _AS_IN_JOB(variables)
    if len(text) > MAX_JOB_BYTES and (size := len(_COMPACT(variables))) > MAX_JOB_BYTES:
        raise InvalidJob(f"variables: {size} bytes is larger than the {MAX_JOB_BYTES} limit")
    return text


@dataclass(frozen=True)
class RowError:
    line: int
    column: str
    reason: str


class ValidRow(NamedTuple):
    """A validated row: everything needed to send its job and to report on it.

    ``text``: the variables as the job carries them (``json.dumps(variables)``).
    """

    line: int
    business_key: str | None
    key: str
    variables: dict[str, Any]
    text: str


def content_hash(variables: dict[str, Any]) -> str:
    """sha256 of the row's variables as canonical JSON (key order and spacing do not count)."""
    canonical = json.dumps(variables, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def row_key(batch_id: str, business_key: str | None, variables: dict[str, Any]) -> str:
    return f"batch:{batch_id}:{business_key or content_hash(variables)}"


class SeenKeys:
    """The keys met so far, as 64-bit hashes in an open-addressing table, with first lines.

    A Python ``set`` of 1,000,000 strings costs ~150 MB; this costs 12 bytes
    per slot at <= 50 % load: ~24 MB for a million rows (~36 MB during the
    last resize). The hash is Python's own for strings (64-bit SipHash with a
    per-process key): the table lives and dies in one process, so it need not
    be stable across runs. Two different keys with the same
    hash (odds ~3e-8 at a million rows) would reject the later row as a
    duplicate: never a double start.
    """

    def __init__(self, capacity: int = 1 << 14) -> None:
        self._hashes = array("Q", [0]) * capacity
        self._lines = array("I", [0]) * capacity
        self._mask = capacity - 1
        self.count = 0

    def add(self, key: str, line: int) -> int | None:
        """Remember ``key``; the line it was first seen on if it was seen before, else None."""
        value = hash(key) & 0xFFFF_FFFF_FFFF_FFFF or 1  # 0 marks a free slot
        hashes, mask = self._hashes, self._mask
        slot = value & mask
        while True:
            found = hashes[slot]
            if found == 0:
                break
            if found == value:
                return int(self._lines[slot])
            slot = (slot + 1) & mask
        hashes[slot] = value
        self._lines[slot] = min(line, 2**32 - 1)
        self.count += 1
        if self.count * 2 > len(hashes):
            self._grow()
        return None

    def _grow(self) -> None:
        old_hashes, old_lines = self._hashes, self._lines
        capacity = len(old_hashes) * 2
        self._hashes = array("Q", [0]) * capacity
        self._lines = array("I", [0]) * capacity
        self._mask = mask = capacity - 1
        hashes = self._hashes
        for value, line in zip(old_hashes, old_lines, strict=True):
            if value:
                slot = value & mask
                while hashes[slot]:
                    slot = (slot + 1) & mask
                hashes[slot] = value
                self._lines[slot] = line

    @property
    def nbytes(self) -> int:
        return len(self._hashes) * (self._hashes.itemsize + self._lines.itemsize)


@dataclass
class Validator:
    """Checks records against the mapping, the job model and the target's adapter."""

    engine: Engine
    target: str
    process: str
    batch_id: str
    mapping: BatchMapping

    def __post_init__(self) -> None:
        self.seen = SeenKeys()
        self._base: dict[str, Any] = {"target": self.target, "process": self.process}
        if self.mapping.version is not None:
            self._base["version"] = self.mapping.version
        if self.mapping.tenant_id is not None:
            self._base["tenant_id"] = self.mapping.tenant_id
        if self.mapping.options:
            self._base["options"] = self.mapping.options

    @property
    def job_base(self) -> dict[str, Any]:
        """The fields every job of the batch shares."""
        return dict(self._base, batch_id=self.batch_id)

    def check(self, record: Record) -> ValidRow | list[RowError]:
        line = record.line
        if record.error:
            return [RowError(line, "", record.error)]
        variables, cell_errors = self.mapping.variables(record.values)
        errors = [RowError(line, column, reason) for column, reason in cell_errors]
        business_key = self._business_key(record, errors)
        if errors and business_key is None:
            return errors
        key = row_key(self.batch_id, business_key, variables)
        first = self.seen.add(key, line)
        if first is not None:
            what = (
                f"duplicate business key {business_key!r}"
                if business_key
                else "same content as another row (no business key to tell them apart)"
            )
            errors.append(
                RowError(line, self.mapping.business_key or "", f"{what}, first on line {first}")
            )
        if errors:
            return errors
        try:
            text = _sized(variables)
            job = self._job(variables, business_key, key)
            self.engine.request_for(job, key)
        except InvalidJob as exc:
            return [RowError(line, self._column(exc.message), exc.message)]
        return ValidRow(line, business_key, key, variables, text)

    def _business_key(self, record: Record, errors: list[RowError]) -> str | None:
        column = self.mapping.business_key
        if not column:
            return None
        raw = record.values.get(column)
        value = raw.strip() if isinstance(raw, str) else raw
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = json.dumps(value)
        if value is None or value == "":
            errors.append(RowError(record.line, column, "missing business key"))
            return None
        if not isinstance(value, str):
            errors.append(RowError(record.line, column, "business key must be text or a number"))
            return None
        if len(value) > MAX_BUSINESS_KEY:
            errors.append(
                RowError(record.line, column, f"business key longer than {MAX_BUSINESS_KEY}")
            )
            return None
        return value

    def _job(self, variables: dict[str, Any], business_key: str | None, key: str) -> Job:
        data = dict(self._base, variables=variables, idempotency_key=key)
        if business_key is not None:
            data["business_key"] = business_key
        try:
            return Job.model_validate(data)
        except ValidationError as exc:
            raise InvalidJob("; ".join(describe(exc, Job.model_fields))) from None

    def _column(self, message: str) -> str:
        """The column an error message is about: ``variables.amount: ...`` -> its source."""
        where = message.split(":", 1)[0]
        if where.startswith("variables."):
            name = where.removeprefix("variables.").split(".")[0].split("[")[0]
            return self.mapping.source_of(name)
        if where == "business_key":
            return self.mapping.business_key or ""
        return f"({where})" if where and " " not in where else ""
