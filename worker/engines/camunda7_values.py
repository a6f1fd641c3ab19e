"""Camunda 7 typed variables: a JSON value -> ``{value, type, valueInfo}`` (a ``VariableValueDto``).

Shared by the process start and the start by message (``processVariables``)
of `worker.engines.camunda7`. Types are inferred from the JSON value unless a
job overrides them per name (``options.variable_types``); ENGINE-NOTES: Json,
Xml and Object need a *serialized* string, Date is
``yyyy-MM-dd'T'HH:mm:ss.SSSZ``, Integer is 32-bit. ISO date strings stay
Strings unless overridden: guessing would turn an order number like
``2026-01-02`` into a Date.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import Field, StrictStr, model_validator

from worker.engines._shared import is_number, parse_iso_datetime
from worker.engines.base import Options
from worker.errors import InvalidJob

TypeName = Literal[
    "String", "Boolean", "Short", "Integer", "Long", "Double", "Date", "Json", "Xml", "Object",
    "Null",
]
NonEmpty = Annotated[StrictStr, Field(min_length=1)]

INT_RANGES = {"Short": 2**15, "Integer": 2**31, "Long": 2**63}
SERIALIZED = {"Json", "Xml", "Object"}
WHOLE = re.compile(r"^\s*[+-]?[0-9]+\s*$")


class ObjectType(Options):
    """An override that needs more than a name (``Object``: the Java type to deserialize to)."""

    type: TypeName
    object_type_name: NonEmpty | None = None
    serialization_data_format: NonEmpty = "application/json"

    @model_validator(mode="after")
    def _object_needs_class(self) -> ObjectType:
        if self.type == "Object" and not self.object_type_name:
            raise ValueError("type Object needs object_type_name (the Java class)")
        return self


def c7_date(value: Any, where: str) -> str:
    """``2026-01-02T03:04:05.000+0000``: Java's ``yyyy-MM-dd'T'HH:mm:ss.SSSZ``."""
    moment = parse_iso_datetime(value, where)
    millis = f"{moment.microsecond // 1000:03d}"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + millis + moment.strftime("%z")


def _whole(value: Any, kind: str, where: str) -> int:
    convertible = isinstance(value, str) and WHOLE.match(value) is not None
    if convertible or (is_number(value) and isinstance(value, float) and value.is_integer()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob(f"{where}: cannot convert {value!r:.64} to {kind}")
    limit = INT_RANGES[kind]
    if not -limit <= value < limit:
        raise InvalidJob(f"{where}: {value} is out of range for {kind}")
    return value


def _scalar(value: Any, kind: str, where: str) -> Any:
    """The JSON value C7 accepts for a primitive ``kind``."""
    if kind in INT_RANGES:
        return _whole(value, kind, where)
    if kind == "Double":
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if not is_number(value):
            raise InvalidJob(f"{where}: cannot convert {value!r:.64} to Double")
        return float(value)
    if kind == "Boolean":
        text = value.strip().lower() if isinstance(value, str) else None
        if text in ("true", "false"):
            return text == "true"
        if not isinstance(value, bool):
            raise InvalidJob(f"{where}: cannot convert {value!r:.64} to Boolean")
        return value
    if kind == "Date":
        return c7_date(value, where)
    if kind == "Null":
        raise InvalidJob(f"{where}: type Null takes only null")
    if isinstance(value, dict | list):
        raise InvalidJob(f"{where}: a {type(value).__name__} cannot be a String (use Json)")
    return value if isinstance(value, str) else json.dumps(value)


def infer_type(value: Any, where: str) -> TypeName:
    """The C7 type of a plain JSON value."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        if -INT_RANGES["Integer"] <= value < INT_RANGES["Integer"]:
            return "Integer"
        if -INT_RANGES["Long"] <= value < INT_RANGES["Long"]:
            return "Long"
        raise InvalidJob(f"{where}: {value} does not fit a 64-bit Long")
    if isinstance(value, float):
        return "Double"
    if isinstance(value, str):
        return "String"
    return "Json"


def typed(value: Any, override: TypeName | ObjectType | None, where: str) -> dict[str, Any]:
    """One ``VariableValueDto``."""
    spec = override if isinstance(override, ObjectType) else None
    if spec is not None:
        kind = spec.type
    elif isinstance(override, str):
        kind = override
    else:
        kind = infer_type(value, where)
    if value is None:
        return {"value": None, "type": kind, "valueInfo": {}}
    if kind not in SERIALIZED:
        return {"value": _scalar(value, kind, where), "type": kind, "valueInfo": {}}
    if kind == "Xml":
        if not isinstance(value, str):
            raise InvalidJob(f"{where}: type Xml needs a string")
        return {"value": value, "type": kind, "valueInfo": {}}
    try:
        serialized = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise InvalidJob(f"{where}: {value!r:.64} is not valid JSON") from None
    info: dict[str, Any] = {}
    if kind == "Object":
        if spec is None or not spec.object_type_name:
            raise InvalidJob(f"{where}: type Object needs object_type_name")
        info = {
            "objectTypeName": spec.object_type_name,
            "serializationDataFormat": spec.serialization_data_format,
        }
    return {"value": serialized, "type": kind, "valueInfo": info}
