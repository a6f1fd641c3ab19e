"""Camunda 7 typed variables (``{value, type, valueInfo}``) converted as engine-rest does.

``VariableValueDto.toTypedValue``: a primitive value that is not already of
the Java type is re-read by Jackson from ``"<value>"`` (so ``"30"`` is a fine
Integer, ``"abc"`` is not, and a 2^31 Integer overflows); serializable types
(Json, Xml, Object) need a string or null. Failures raise ``VariableError``
with the engine's message; the caller prefixes ``Cannot instantiate process
definition <id>: ``. Request bodies are bound to their DTO as Jackson binds
them (`bind_dto`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any

from worker.local.sandbox.web import JsonDict, Reject, is_int, is_number

_JAVA_TYPES = {"String": "java.lang.String", "Boolean": "java.lang.Boolean",
               "Integer": "java.lang.Integer", "Long": "java.lang.Long",
               "Short": "java.lang.Short", "Double": "java.lang.Double",
               "Date": "java.util.Date", "Bytes": "[B", "File": "[B"}
_SERIALIZABLE = ("Json", "Xml", "Object")
_RANGES = {"Integer": 31, "Long": 63, "Short": 15}
_INTEGER = re.compile(r"^[+-]?\d+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{4}$")


class VariableError(ValueError):
    """A variable the engine refuses (400 ``InvalidRequestException``)."""


def convert_variables(variables: Any) -> dict[str, JsonDict]:
    """Typed variables as the engine would return them with ``withVariablesInReturn``."""
    if variables is None:
        return {}
    if not isinstance(variables, dict):
        raise VariableError("variables must be a JSON object")
    return {name: convert_variable(name, dto) for name, dto in variables.items()}


def convert_variable(name: str, dto: Any) -> JsonDict:
    if not isinstance(dto, dict):
        raise VariableError(f"variable '{name}' must be an object with value, type, valueInfo")
    value, value_info = dto.get("value"), dto.get("valueInfo") or {}
    if not isinstance(value_info, dict):
        raise VariableError(f"valueInfo of variable '{name}' must be an object")
    type_name = dto.get("type")
    canonical = _infer_type(value) if type_name is None else _canonical(str(type_name))
    if canonical in _SERIALIZABLE:
        _check_serialized(canonical, str(type_name), value, value_info)
        converted = value
    elif canonical == "Null":
        converted = None
    elif canonical == "Untyped":
        canonical, converted = "Object", value
    else:
        converted = None if value is None else _convert_primitive(canonical, type_name, value)
    return {"type": canonical, "value": converted, "valueInfo": value_info}


def plain_value(typed: JsonDict) -> Any:
    """The value a test wants to see (Json strings parsed; everything else as given)."""
    if typed["type"] == "Json" and isinstance(typed["value"], str):
        try:
            return json.loads(typed["value"])
        except json.JSONDecodeError:
            return typed["value"]
    return typed["value"]


def _canonical(type_name: str) -> str:
    """engine-rest lower-cases only the first letter: ``String`` and ``string`` both work."""
    lookup = type_name[:1].lower() + type_name[1:]
    for canonical in (*_JAVA_TYPES, *_SERIALIZABLE, "Null"):
        if canonical[:1].lower() + canonical[1:] == lookup:
            return canonical
    raise VariableError(f"Unsupported value type '{type_name}'")


def _infer_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if is_int(value):
        return "Integer" if -(2**31) <= value < 2**31 else "Long"
    if isinstance(value, float):
        return "Double"
    if isinstance(value, str):
        return "String"
    return "Untyped"


def _check_serialized(canonical: str, type_name: str, value: Any, info: JsonDict) -> None:
    if value is not None and not isinstance(value, str):
        raise VariableError(f"Must provide 'null' or String value for value of "
                            f"SerializableValue type '{type_name}'.")
    if canonical == "Object" and not (info.get("objectTypeName")
                                      and info.get("serializationDataFormat")):
        raise VariableError("Must provide 'objectTypeName' and 'serializationDataFormat' in "
                            "valueInfo for value of type 'Object'.")


def _convert_primitive(canonical: str, type_name: Any, value: Any) -> Any:
    converted = _jackson_read(canonical, value)
    if converted is None:
        raise VariableError(f"Cannot convert value '{_java_str(value)}' of type '{type_name}' "
                            f"to java type {_JAVA_TYPES[canonical]}")
    return converted


def _jackson_read(canonical: str, value: Any) -> Any:
    """The converted value, or None when Jackson would fail."""
    if isinstance(value, dict | list):
        return None
    text = value if isinstance(value, str) else _java_str(value)
    if canonical in _RANGES:
        bits = _RANGES[canonical]
        if is_int(value) or _INTEGER.match(text):
            number = int(text)
            return number if -(2**bits) <= number < 2**bits else None
        return None
    if canonical == "Double":
        return float(value) if is_number(value) else _float(text)
    if canonical == "Boolean":
        if isinstance(value, bool):
            return value
        return {"true": True, "false": False}.get(text.lower()) if text in (
            "true", "True", "TRUE", "false", "False", "FALSE") else None
    if canonical == "Date":
        return text if isinstance(value, str) and _valid_date(text) else None
    if canonical in ("Bytes", "File"):
        return text if isinstance(value, str) and _valid_base64(text) else None
    return text  # String: any scalar becomes its text


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _valid_date(text: str) -> bool:
    if not _DATE.match(text):
        return False
    try:
        datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        return False
    return True


def _valid_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _java_str(value: Any) -> str:
    """``String.valueOf`` of the value Jackson produced from the JSON."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return str(value)


def bind_dto(body: Any, fields: dict[str, type], dto: str, not_object: str) -> None:
    """Refuse ``body`` as Jackson refuses it when binding the DTO class ``dto``.

    Not an object: 400 ``not_object``. A field the DTO lacks, or a value not
    of its type (a bool never passes for a number), is refused by name.
    """
    if not isinstance(body, dict):
        raise Reject(400, not_object)
    for name, value in body.items():
        expected = fields.get(name)
        if expected is None:
            raise Reject(400, f'Unrecognized field "{name}" (class {dto}), not marked as ignorable')
        if value is not None and (not isinstance(value, expected)
                                  or (expected is not bool and isinstance(value, bool))):
            raise Reject(400, f"Cannot deserialize value of property '{name}': expected "
                              f"{expected.__name__}")
