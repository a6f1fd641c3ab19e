"""Camunda 8 create-process-instance requests: each API version's dialect and validation.

The rules are hand-coded from the 8.8 / 8.9 OpenAPI specs
(``ProcessInstanceCreationInstructionById`` / ``ByKey``, ``TagSet``,
``OperationReference``, ``TenantId``) and seed 001 for 8.6-alpha; the
sandbox never reads the spec files at run time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.local.sandbox.web import JsonDict, Reject, is_int

PROCESS_ID = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_\-.]*$")
_LONG_KEY = re.compile(r"^-?[0-9]+$")
_TAG = re.compile(r"^[A-Za-z][A-Za-z0-9_\-:.]{0,99}$")
_TENANT = re.compile(r"^(<default>|[A-Za-z0-9_@.+-]+)$")
_INT32 = (-(2**31), 2**31 - 1)
_COMMON_FIELDS = frozenset({"variables", "tenantId", "operationReference", "startInstructions",
                            "awaitCompletion", "requestTimeout", "fetchVariables"})


@dataclass(frozen=True)
class Dialect:
    """How one API version names fields, types keys and signals backpressure."""

    version: str
    id_field: str
    version_field: str
    definition_key_out: str
    extra_fields: frozenset[str]
    string_keys: bool
    backpressure: int
    version_with_key: bool = False

    @property
    def allowed(self) -> frozenset[str]:
        return (_COMMON_FIELDS | self.extra_fields
                | {self.id_field, self.version_field, "processDefinitionKey"})


_GA_OUT = "processDefinitionKey"
DIALECTS = {
    "8.8": Dialect("8.8", "processDefinitionId", "processDefinitionVersion", _GA_OUT,
                   frozenset({"tags", "runtimeInstructions"}), True, 503),
    "8.9": Dialect("8.9", "processDefinitionId", "processDefinitionVersion", _GA_OUT,
                   frozenset({"tags", "runtimeInstructions", "businessId"}), True, 503,
                   version_with_key=True),
    "8.6": Dialect("8.6", "processDefinitionId", "processDefinitionVersion", _GA_OUT,
                   frozenset(), False, 429),
    "8.6-alpha": Dialect("8.6-alpha", "bpmnProcessId", "version", "processKey",
                         frozenset(), False, 429),
}


@dataclass(frozen=True)
class CreationCommand:
    """A validated create-process-instance request."""

    process_id: str | None
    version: int | None
    definition_key: int | None
    variables: JsonDict
    tenant_id: str | None
    operation_reference: int | None
    start_instructions: list[JsonDict]
    await_completion: bool
    fetch_variables: list[str]
    tags: list[str]
    business_id: str | None


def parse_creation(body: JsonDict, dialect: Dialect) -> CreationCommand:
    """Validate a request body like the gateway does; ``Reject(400)`` listing every problem."""
    problems = [f"Request property [{name}] cannot be parsed"
                for name in body if name not in dialect.allowed]
    by_id, by_key = dialect.id_field in body, "processDefinitionKey" in body
    pair = f"[{dialect.id_field}, processDefinitionKey]"
    if by_id and by_key:
        problems.append(f"Only one of {pair} is allowed.")
    elif not by_id and not by_key:
        problems.append(f"At least one of {pair} is required.")
    if by_key and dialect.version_field in body and not dialect.version_with_key:
        problems.append(f"Request property [{dialect.version_field}] cannot be parsed")
    problems += _check_fields(body, dialect)
    if problems:
        raise Reject(400, " ".join(dict.fromkeys(problems)))
    key = body.get("processDefinitionKey")
    return CreationCommand(
        process_id=body.get(dialect.id_field),
        version=body.get(dialect.version_field),
        definition_key=None if key is None else int(key),
        variables=body.get("variables") or {},
        tenant_id=body.get("tenantId"),
        operation_reference=body.get("operationReference"),
        start_instructions=body.get("startInstructions") or [],
        await_completion=bool(body.get("awaitCompletion")),
        fetch_variables=body.get("fetchVariables") or [],
        tags=body.get("tags") or [],
        business_id=body.get("businessId"),
    )


def _check_fields(body: JsonDict, dialect: Dialect) -> list[str]:
    checks: dict[str, Callable[[Any], str | None]] = {
        dialect.id_field: _check_process_id,
        dialect.version_field: lambda v: None if is_int(v) and _INT32[0] <= v <= _INT32[1]
        else "must be a 32-bit integer",
        "processDefinitionKey": lambda v: _check_key(v, dialect.string_keys),
        "variables": lambda v: None if v is None or isinstance(v, dict)
        else "must be a JSON object",
        "tenantId": lambda v: None if isinstance(v, str) and _TENANT.match(v)
        else f"must match {_TENANT.pattern}",
        "operationReference": lambda v: None if is_int(v) and v >= 1
        else "must be an integer >= 1",
        "startInstructions": _check_start_instructions,
        "runtimeInstructions": _check_runtime_instructions,
        "awaitCompletion": lambda v: None if isinstance(v, bool) else "must be a boolean",
        "fetchVariables": lambda v: None if isinstance(v, list)
        and all(isinstance(x, str) for x in v) else "must be an array of strings",
        "requestTimeout": lambda v: None if is_int(v) and v >= 0 else "must be an integer >= 0",
        "tags": _check_tags,
        "businessId": lambda v: None if isinstance(v, str) and 1 <= len(v) <= 256
        else "must be a string of 1 to 256 characters",
    }
    problems = []
    for name, check in checks.items():
        if name in body and name in dialect.allowed:
            problem = check(body[name])
            if problem:
                problems.append(f"The provided {name} {json.dumps(body[name])} {problem}.")
    return problems


def _check_process_id(value: Any) -> str | None:
    if isinstance(value, str) and PROCESS_ID.match(value):
        return None
    return f"must match {PROCESS_ID.pattern}"


def _check_key(value: Any, string_keys: bool) -> str | None:
    if string_keys:
        return None if isinstance(value, str) and _LONG_KEY.match(value) and len(value) <= 25 \
            else "must be a string key matching ^-?[0-9]+$"
    if is_int(value) or (isinstance(value, str) and _LONG_KEY.match(value)):
        return None
    return "must be an int64 number"


def _check_start_instructions(value: Any) -> str | None:
    if isinstance(value, list) and all(
        isinstance(item, dict) and isinstance(item.get("elementId"), str) for item in value
    ):
        return None
    return "must be an array of objects with an elementId"


def _check_runtime_instructions(value: Any) -> str | None:
    if isinstance(value, list) and all(
        isinstance(item, dict) and item.get("type") == "TERMINATE_PROCESS_INSTANCE"
        and isinstance(item.get("afterElementId"), str) for item in value
    ):
        return None
    return "must be an array of TERMINATE_PROCESS_INSTANCE instructions with an afterElementId"


def _check_tags(value: Any) -> str | None:
    if not isinstance(value, list):
        return "must be an array of tags"
    if len(value) > 10:
        return "must hold at most 10 tags"
    if len(set(map(json.dumps, value))) != len(value):
        return "must not hold duplicate tags"
    bad = [tag for tag in value if not (isinstance(tag, str) and _TAG.match(tag))]
    if bad:
        return f"holds invalid tags {json.dumps(bad)} (must match {_TAG.pattern})"
    return None
