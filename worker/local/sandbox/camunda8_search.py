"""``POST /v2/process-instances/search`` query parsing and matching for the C8 emulator.

Supported: ``filter`` fields processDefinitionId / Key / Version / Name,
processInstanceKey, parentProcessInstanceKey (every emulated instance is a
root: it has none), tenantId, state, hasIncident, tags (all must be carried),
variables (``[{name, value}]``, value compared with the variable's compact JSON
serialization, so the string ``abc`` is found with ``"\\"abc\\""``) and, on
8.9, businessId; string filters may be a plain value or ``$eq``, ``$neq``,
``$exists``, ``$in``, ``$notIn``, ``$like``. ``page.from``/``page.limit``.
Real filter fields the sandbox does not implement get a 400 that says so,
never a silently wrong result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.local.sandbox.web import JsonDict, Reject, is_int

_STRING_OPS = frozenset({"$eq", "$neq", "$exists", "$in", "$notIn", "$like"})
_RECORD_FIELDS: dict[str, Callable[[JsonDict], str | None]] = {
    "processDefinitionId": lambda r: r["process"],
    "processDefinitionKey": lambda r: r["processDefinitionKey"],
    "processDefinitionVersion": lambda r: str(r["version"]),
    "processDefinitionName": lambda r: r["processDefinitionName"],
    "processInstanceKey": lambda r: r["id"],
    "parentProcessInstanceKey": lambda r: None,
    "tenantId": lambda r: r["tenant_id"],
    "state": lambda r: r["state"],
    "businessId": lambda r: r["businessId"],
}
_KNOWN_UNSUPPORTED = frozenset({
    "startDate", "endDate", "parentElementInstanceKey",
    "batchOperationId", "batchOperationKey", "errorMessage", "hasRetriesLeft",
    "elementInstanceState", "elementId", "hasElementInstanceIncident",
    "incidentErrorHashCode", "processDefinitionVersionTag", "$or",
})


def variable_json(value: Any) -> str:
    """A variable value serialized the way C8 search compares it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class SearchQuery:
    """A validated search request."""

    filter: JsonDict
    offset: int
    limit: int

    @classmethod
    def parse(cls, body: Any, *, allow_business_id: bool) -> SearchQuery:
        """Validate like the gateway (400 for unknown properties)."""
        if not isinstance(body, dict):
            raise Reject(400, "Request body is not a JSON object")
        _reject_unknown(body, {"filter", "sort", "page"}, "")
        criteria = body.get("filter") or {}
        if not isinstance(criteria, dict):
            raise Reject(400, "Request property [filter] cannot be parsed")
        fields = set(_RECORD_FIELDS) | {"tags", "variables", "hasIncident"}
        if not allow_business_id:
            fields.discard("businessId")
        for name in criteria:
            if name in _KNOWN_UNSUPPORTED:
                raise Reject(400, f"The sandbox does not support the filter [{name}]")
        _reject_unknown(criteria, fields, "filter.")
        for name, spec in criteria.items():
            _validate_criterion(name, spec)
        offset, limit = _page(body.get("page") or {})
        return cls(criteria, offset, limit)

    def matches(self, record: JsonDict) -> bool:
        for name, spec in self.filter.items():
            if name == "tags":
                if not set(spec) <= set(record["tags"]):
                    return False
            elif name == "variables":
                if not all(_variable_matches(record["variables"], item) for item in spec):
                    return False
            elif name == "hasIncident":
                if spec is not False:
                    return False
            elif not string_matches(_RECORD_FIELDS[name](record), spec):
                return False
        return True

    def page(self, records: list[JsonDict]) -> list[JsonDict]:
        return records[self.offset:self.offset + self.limit]


def string_matches(actual: str | None, spec: Any) -> bool:
    """Apply a C8 string filter property (plain value or advanced operators)."""
    if not isinstance(spec, dict):
        return actual == str(spec)
    return all(_operator_matches(op, operand, actual) for op, operand in spec.items())


def _operator_matches(op: str, operand: Any, actual: str | None) -> bool:
    if op == "$exists":
        return (actual is not None) == bool(operand)
    if op in ("$in", "$notIn"):
        return (actual in [str(x) for x in operand]) == (op == "$in")
    if op == "$like":
        return actual is not None and _like(str(operand)).fullmatch(actual) is not None
    return (actual == str(operand)) == (op == "$eq")


def _like(pattern: str) -> re.Pattern[str]:
    """``*`` any run, ``?`` one character, backslash escapes."""
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append({"*": ".*", "?": "."}.get(char, re.escape(char)))
    return re.compile("".join(out), re.DOTALL)


def _variable_matches(variables: JsonDict, item: JsonDict) -> bool:
    name = item["name"]
    actual = variable_json(variables[name]) if name in variables else None
    return string_matches(actual, item["value"])


def _reject_unknown(obj: JsonDict, allowed: set[str], prefix: str) -> None:
    for name in obj:
        if name not in allowed:
            raise Reject(400, f"Request property [{prefix}{name}] cannot be parsed")


def _validate_criterion(name: str, spec: Any) -> None:
    if name == "tags":
        if not (isinstance(spec, list) and all(isinstance(tag, str) for tag in spec)):
            raise Reject(400, "The provided filter.tags must be an array of strings.")
    elif name == "variables":
        if not isinstance(spec, list):
            raise Reject(400, "The provided filter.variables must be an array.")
        for item in spec:
            if not (isinstance(item, dict) and isinstance(item.get("name"), str)
                    and "value" in item):
                raise Reject(400, "Each filter.variables item needs a name and a value.")
            _validate_string_filter("filter.variables.value", item["value"])
    elif name == "hasIncident":
        if not isinstance(spec, bool):
            raise Reject(400, "The provided filter.hasIncident must be a boolean.")
    else:
        _validate_string_filter(f"filter.{name}", spec)


def _validate_string_filter(where: str, spec: Any) -> None:
    if isinstance(spec, str) or is_int(spec):
        return
    if not isinstance(spec, dict) or not spec:
        raise Reject(400, f"Request property [{where}] cannot be parsed")
    for op, operand in spec.items():
        if op not in _STRING_OPS:
            raise Reject(400, f"Request property [{where}.{op}] cannot be parsed")
        if op in ("$in", "$notIn") and not isinstance(operand, list):
            raise Reject(400, f"Request property [{where}.{op}] must be an array")


def _page(page: Any) -> tuple[int, int]:
    if not isinstance(page, dict):
        raise Reject(400, "Request property [page] cannot be parsed")
    _reject_unknown(page, {"from", "limit"}, "page.")
    offset, limit = page.get("from", 0), page.get("limit", 100)
    if not (is_int(offset) and offset >= 0 and is_int(limit) and 1 <= limit <= 10000):
        raise Reject(400, "The provided page must have from >= 0 and 1 <= limit <= 10000.")
    return offset, limit
