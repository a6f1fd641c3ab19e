"""Which columns of a batch file become which process variables, with which type.

A mapping comes from ``--map column=variable[:type]`` options, a small TOML
file (``config/batch-mapping.example.toml``), or both (options win). Without
one, every CSV column is a string variable of the same name and every JSONL
value is sent as the JSON value it already is.

Conversions are plain functions rather than pydantic models: they run once
per cell of files with millions of rows, and each must say in one short
phrase what was wrong with the cell, because that phrase lands in a report
next to a line number.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from worker.errors import ConfigError
from worker.validation import describe, did_you_mean

ColumnType = Literal["string", "int", "float", "bool", "date", "datetime", "json", "auto"]
EmptyPolicy = Literal["keep", "null", "omit", "error"]
TYPES: tuple[str, ...] = get_args(ColumnType)
INT64 = 2**63
_INT = re.compile(r"^[+-]?[0-9]+$")
_TRUE = frozenset({"true", "t", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off"})
OMIT = object()
"""Returned by `Column.convert` when an empty cell is to be left out of the variables."""


class CellError(ValueError):
    """One cell could not be converted; the message is the reason, without the location."""


def _text(value: Any) -> str:
    """A cell as text: CSV cells already are; JSON scalars are written as JSON writes them."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return json.dumps(value)
    raise CellError(
        f"expected a text value, got {'an array' if isinstance(value, list) else 'an object'}"
    )


def to_string(value: Any, _fmt: str | None) -> JsonValue:
    return _text(value)


def to_int(value: Any, _fmt: str | None) -> JsonValue:
    if isinstance(value, bool):
        raise CellError("expected an integer, got a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        text = _text(value).strip()
        if not _INT.match(text):
            raise CellError(f"{text[:40]!r} is not an integer")
        value = int(text)
    if not -INT64 <= value < INT64:
        raise CellError(f"{value} does not fit in 64 bits")
    return int(value)


def to_float(value: Any, decimal: str | None) -> JsonValue:
    """``format`` of a float column is its decimal separator: ``","`` reads ``12,5``."""
    if isinstance(value, bool):
        raise CellError("expected a number, got a boolean")
    if isinstance(value, int | float):
        number = float(value)
    else:
        shown = text = _text(value).strip()
        if decimal and decimal != ".":
            text = text.replace(".", "").replace(decimal, ".")
        try:
            number = float(text)
        except ValueError:
            raise CellError(f"{shown[:40]!r} is not a number") from None
    if not math.isfinite(number):
        raise CellError("NaN and infinity are not JSON numbers")
    return number


def to_bool(value: Any, _fmt: str | None) -> JsonValue:
    if isinstance(value, bool):
        return value
    text = _text(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise CellError(f"{text[:40]!r} is not a boolean (true/false, yes/no, 1/0, on/off)")


def to_date(value: Any, fmt: str | None) -> JsonValue:
    text = _text(value).strip()
    try:
        parsed = datetime.strptime(text, fmt).date() if fmt else date.fromisoformat(text)
    except ValueError:
        raise CellError(f"{text[:40]!r} is not a date ({fmt or 'YYYY-MM-DD'})") from None
    return parsed.isoformat()


def to_datetime(value: Any, fmt: str | None) -> JsonValue:
    """ISO 8601 out; the offset stays as written (a naive value is not guessed into UTC)."""
    text = _text(value).strip()
    try:
        parsed = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
    except ValueError:
        raise CellError(f"{text[:40]!r} is not a date-time ({fmt or 'ISO 8601'})") from None
    return parsed.isoformat()


def to_json(value: Any, _fmt: str | None) -> JsonValue:
    if not isinstance(value, str):
        return value  # type: ignore[no-any-return]
    try:
        return json.loads(value)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise CellError(f"not valid JSON ({exc})") from None


def as_is(value: Any, _fmt: str | None) -> JsonValue:
    return value  # type: ignore[no-any-return]


CONVERTERS: dict[str, Callable[[Any, str | None], JsonValue]] = {
    "string": to_string,
    "int": to_int,
    "float": to_float,
    "bool": to_bool,
    "date": to_date,
    "datetime": to_datetime,
    "json": to_json,
    "auto": as_is,
}


@dataclass(frozen=True)
class Column:
    """One source column -> one variable."""

    source: str
    variable: str
    type: ColumnType = "string"
    empty: EmptyPolicy = "keep"
    format: str | None = None

    def convert(self, value: Any) -> Any:
        """The variable's value, `OMIT`, or `CellError`.

        An empty cell (``""``, JSON null, a missing JSONL key) is "" for a
        string column and null otherwise, unless ``empty`` says null, omit or error.
        """
        if value is None or value == "":
            if self.empty == "error":
                raise CellError("empty value")
            if self.empty == "omit":
                return OMIT
            if self.empty == "null":
                return None
            if self.type == "auto":
                return value
            return "" if self.type == "string" else None
        return CONVERTERS[self.type](value, self.format)


@dataclass(frozen=True)
class BatchMapping:
    """The whole mapping. ``columns`` empty means: every column, as a string (CSV) or as is."""

    columns: tuple[Column, ...] = ()
    include_unmapped: bool = False
    business_key: str | None = None
    default_type: ColumnType = "string"
    options: dict[str, JsonValue] = field(default_factory=dict)
    version: int | None = None
    tenant_id: str | None = None

    def variables(self, record: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Convert one record: (variables, [(column, reason), ...])."""
        out: dict[str, Any] = {}
        errors: list[tuple[str, str]] = []
        mapped = self.columns
        if not mapped or self.include_unmapped:
            names = {c.source for c in mapped}
            auto = self.default_type == "auto"
            for name, value in record.items():
                if name in names:
                    continue
                if auto or value is None:
                    out[name] = value if auto else ""
                    continue
                try:
                    out[name] = _text(value)
                except CellError as exc:
                    errors.append((name, str(exc)))
        for column in mapped:
            try:
                value = column.convert(record.get(column.source))
            except CellError as exc:
                errors.append((column.source, str(exc)))
                continue
            if value is not OMIT:
                out[column.variable] = value
        return out, errors

    def source_of(self, variable: str) -> str:
        """The column a variable came from (to point engine errors at a column)."""
        for column in self.columns:
            if column.variable == variable:
                return column.source
        return variable

    def check_header(self, header: Iterable[str]) -> None:
        """Every column the mapping names must exist: a typo fails before any row."""
        present = list(header)
        wanted = [c.source for c in self.columns]
        if self.business_key:
            wanted.append(self.business_key)
        problems = [
            f"column {name!r} is not in the header{did_you_mean(name, present)}"
            for name in dict.fromkeys(wanted)
            if name not in present
        ]
        if problems:
            raise ConfigError("; ".join(problems))

    def with_defaults_for(self, fmt: str) -> BatchMapping:
        """JSONL values keep their JSON type unless a column says otherwise."""
        if fmt == "jsonl" and self.default_type == "string":
            return replace(self, default_type="auto")
        return self

    def merged(self, extra: Iterable[Column], business_key: str | None) -> BatchMapping:
        """This mapping with ``--map`` columns added or replacing same-source columns."""
        extra = list(extra)
        replaced = {c.source for c in extra}
        columns = tuple(c for c in self.columns if c.source not in replaced) + tuple(extra)
        return replace(self, columns=columns, business_key=business_key or self.business_key)


def parse_map(text: str) -> Column:
    """``column``, ``column:type``, ``column=variable`` or ``column=variable:type``.

    A column whose name holds ``:`` or ``=`` needs the long form: ``a:b=v:string``.
    """
    source, sep, rest = text.partition("=")
    if not sep:
        base, colon, kind = text.rpartition(":")
        source, rest = (base, f"{base}:{kind}") if colon else (text, text)
    variable, colon, kind = rest.rpartition(":")
    if not colon:
        variable, kind = rest, "string"
    if kind not in TYPES:
        raise ConfigError(
            f"--map {text!r}: unknown type {kind!r}{did_you_mean(kind, TYPES)}; "
            f"one of {', '.join(TYPES)}"
        )
    source, variable = source.strip(), variable.strip()
    if not source:
        raise ConfigError(f"--map {text!r}: expected COLUMN[=VARIABLE][:TYPE]")
    return Column(source=source, variable=variable or source, type=kind)  # type: ignore[arg-type]


class _ColumnFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variable: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    type: ColumnType = "string"
    empty: EmptyPolicy = "keep"
    format: Annotated[str, Field(min_length=1)] | None = None


class _MappingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    business_key: Annotated[str, Field(min_length=1)] | None = None
    include_unmapped: bool = False
    version: Annotated[int, Field(ge=1)] | None = None
    tenant_id: Annotated[str, Field(min_length=1)] | None = None
    options: dict[str, JsonValue] = Field(default_factory=dict)
    columns: dict[str, _ColumnFile] = Field(default_factory=dict)


def load_mapping(path: Path) -> BatchMapping:
    """Read and check a mapping file; every problem names the file and the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: mapping file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        raw = _MappingFile.model_validate(data)
    except ValidationError as exc:
        known = [*_MappingFile.model_fields, *_ColumnFile.model_fields]
        raise ConfigError("\n".join(f"{path}: {m}" for m in describe(exc, known))) from None
    columns = tuple(
        Column(source, spec.variable or source, spec.type, spec.empty, spec.format)
        for source, spec in raw.columns.items()
    )
    return BatchMapping(
        columns=columns,
        include_unmapped=raw.include_unmapped,
        business_key=raw.business_key,
        options=raw.options,
        version=raw.version,
        tenant_id=raw.tenant_id,
    )
