"""Camunda 8 emulator: deployed process definitions, their search, and message start events.

A definition may declare a message start event (``message_start``, the
message's name) and a ``version_tag``. ``POST /v2/process-definitions/search``
supports ``filter`` fields processDefinitionId (a string filter: plain or
``$eq``/``$in``/``$like``...), processDefinitionKey, version, versionTag,
tenantId, name, isLatestVersion; ``sort`` by version, processDefinitionKey or
processDefinitionId; ``page.from``/``page.limit``. Filters of the spec the
sandbox does not implement get a 400 that says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.local.sandbox.camunda8_search import string_matches
from worker.local.sandbox.web import JsonDict, Reject, is_int

_TENANT = re.compile(r"^(<default>|[A-Za-z0-9_@.+-]+)$")
_FILTERS = frozenset({"processDefinitionId", "processDefinitionKey", "version", "versionTag",
                      "tenantId", "name", "isLatestVersion"})
_UNSUPPORTED = frozenset({"resourceName", "hasStartForm", "state"})
_SORT_FIELDS = frozenset({"version", "processDefinitionKey", "processDefinitionId"})


@dataclass(frozen=True)
class Definition:
    """A deployed process definition."""

    process_id: str
    version: int
    key: int
    tenant_id: str
    name: str
    version_tag: str | None = None
    message_start: str | None = None

    def view(self) -> JsonDict:
        """As the create call's answer and the sandbox's own listing show it."""
        return {"processDefinitionId": self.process_id, "processDefinitionVersion": self.version,
                "processDefinitionKey": str(self.key), "tenantId": self.tenant_id,
                "name": self.name, "versionTag": self.version_tag,
                "messageStart": self.message_start}

    def search_item(self, string_keys: bool) -> JsonDict:
        """A ``ProcessDefinitionResult``."""
        return {"name": self.name, "resourceName": f"{self.process_id}.bpmn",
                "version": self.version, "versionTag": self.version_tag,
                "processDefinitionId": self.process_id, "tenantId": self.tenant_id,
                "processDefinitionKey": str(self.key) if string_keys else self.key,
                "hasStartForm": False, "state": "ACTIVE"}


def latest(definitions: list[Definition]) -> list[Definition]:
    """The newest version of each (process id, tenant)."""
    newest: dict[tuple[str, str], Definition] = {}
    for definition in definitions:
        current = newest.get((definition.process_id, definition.tenant_id))
        if current is None or definition.version > current.version:
            newest[(definition.process_id, definition.tenant_id)] = definition
    return list(newest.values())


def search_definitions(body: Any, deployed: list[Definition]) -> list[Definition]:
    """The definitions a search request selects, sorted and paged; ``Reject(400)`` if bad."""
    if not isinstance(body, dict):
        raise Reject(400, "Request body is not a JSON object")
    for name in body:
        if name not in ("filter", "sort", "page"):
            raise Reject(400, f"Request property [{name}] cannot be parsed")
    criteria = body.get("filter") or {}
    if not isinstance(criteria, dict):
        raise Reject(400, "Request property [filter] cannot be parsed")
    for name in criteria:
        if name in _UNSUPPORTED:
            raise Reject(400, f"The sandbox does not support the filter [{name}]")
        if name not in _FILTERS:
            raise Reject(400, f"Request property [filter.{name}] cannot be parsed")
    _check_filter(criteria)
    pool = latest(deployed) if criteria.get("isLatestVersion") else deployed
    found = [d for d in pool if _matches(d, criteria)]
    for rule in reversed(_sort_rules(body.get("sort") or [])):
        field, descending = rule
        found.sort(key=lambda d: _sort_value(d, field), reverse=descending)
    offset, limit = _page(body.get("page") or {})
    return found[offset:offset + limit]


def _check_filter(criteria: JsonDict) -> None:
    checks: dict[str, Callable[[Any], bool]] = {
        "version": is_int,
        "versionTag": lambda v: isinstance(v, str),
        "tenantId": lambda v: isinstance(v, str) and _TENANT.match(v) is not None,
        "processDefinitionKey": lambda v: isinstance(v, str) and v.lstrip("-").isdigit(),
        "isLatestVersion": lambda v: isinstance(v, bool),
    }
    for name, check in checks.items():
        if name in criteria and not check(criteria[name]):
            raise Reject(400, f"The provided filter.{name} cannot be parsed.")
    for name in ("processDefinitionId", "name"):
        value = criteria.get(name)
        if name in criteria and not isinstance(value, str | dict):
            raise Reject(400, f"Request property [filter.{name}] cannot be parsed")


def _matches(definition: Definition, criteria: JsonDict) -> bool:
    plain = {"version": definition.version, "versionTag": definition.version_tag,
             "tenantId": definition.tenant_id, "processDefinitionKey": str(definition.key)}
    for name, value in criteria.items():
        if name in plain and plain[name] != value:
            return False
    return (string_matches(definition.process_id, criteria.get("processDefinitionId",
                                                               {"$exists": True}))
            and string_matches(definition.name, criteria.get("name", {"$exists": True})))


def _sort_rules(sort: Any) -> list[tuple[str, bool]]:
    if not isinstance(sort, list):
        raise Reject(400, "Request property [sort] cannot be parsed")
    rules = []
    for item in sort:
        field = item.get("field") if isinstance(item, dict) else None
        order = item.get("order", "ASC") if isinstance(item, dict) else None
        if field not in _SORT_FIELDS or order not in ("ASC", "DESC"):
            raise Reject(400, f"The sandbox cannot sort by {item!r}")
        rules.append((str(field), order == "DESC"))
    return rules


def _sort_value(definition: Definition, field: str) -> Any:
    return {"version": definition.version, "processDefinitionKey": definition.key,
            "processDefinitionId": definition.process_id}[field]


def _page(page: Any) -> tuple[int, int]:
    if not isinstance(page, dict):
        raise Reject(400, "Request property [page] cannot be parsed")
    offset, limit = page.get("from", 0), page.get("limit", 100)
    if not (is_int(offset) and offset >= 0 and is_int(limit) and 1 <= limit <= 10000):
        raise Reject(400, "The provided page must have from >= 0 and 1 <= limit <= 10000.")
    return offset, limit
