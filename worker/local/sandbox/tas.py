"""Syca TAS ``start-process`` emulator (apiExtensions plugin).

``POST /api/plugins/api-extensions/start-process`` with
``{"processId": <number>, "data": {...}}``; Bearer auth in the real product
(``auth.configure(type="bearer", token=...)``). Atomic, as seed 000 promises:
any invalid part and nothing is created. Rules: ``processId`` must be a
deployed template; every ``data`` field must exist on it; values must be
scalars of the field's kind — ``text`` a string, ``number`` a JSON number,
``date`` a ``YYYY-MM-DD`` calendar date, ``lov`` one of the template's values.

Assumptions (TAS documents neither body; the worker must not depend on them):

* success: 200 ``{"result": true, "iprocId": 1001}`` — ``iprocId`` is the case id;
* error: ``{"error": {"message": "...", "code": "...", "field": "..."}}`` with
  400 for invalid input (codes ``INVALID_BODY``, ``INVALID_PROCESS_ID``,
  ``UNKNOWN_VARIABLE``, ``INVALID_VALUE``, ``INVALID_DATE``,
  ``INVALID_LOV_VALUE``), 404 ``PROCESS_NOT_FOUND`` for an unknown template,
  401 ``UNAUTHORIZED``; injected errors use the HTTP status name as code
  (``SERVICE_UNAVAILABLE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from http import HTTPStatus
from typing import Any

from werkzeug.wrappers import Request, Response

from worker.local.sandbox.base import EngineApp, Route
from worker.local.sandbox.store import Registry
from worker.local.sandbox.web import JsonDict, Reject, is_int, is_number, json_response, read_json

FIRST_CASE_ID = 1001
_KINDS = ("text", "number", "date")


@dataclass(frozen=True)
class Field:
    """A template variable: ``kind`` text/number/date/lov (``values`` for lov)."""

    kind: str
    values: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: Any) -> Field:
        """``"text"``, ``"number"``, ``"date"``, a list (LOV) or ``{"lov": [...]}``."""
        if isinstance(spec, str) and spec in _KINDS:
            return cls(spec)
        values = spec.get("lov") if isinstance(spec, dict) else spec
        if isinstance(values, list | tuple) and values and all(
                isinstance(v, str) for v in values):
            return cls("lov", tuple(values))
        raise ValueError(f"field spec must be one of {_KINDS}, a list of LOV values or "
                         f"{{'lov': [...]}}, not {spec!r}")

    def problem(self, value: Any) -> tuple[str, str] | None:
        """(code, message) when ``value`` does not fit this field."""
        if value is None or isinstance(value, dict | list):
            return "INVALID_VALUE", "must be a string, a number or a date"
        if self.kind == "number":
            return None if is_number(value) else ("INVALID_VALUE", "must be a number")
        if not isinstance(value, str):
            return "INVALID_VALUE", f"must be a {'string' if self.kind == 'text' else 'date'}"
        if self.kind == "date" and not _is_date(value):
            return "INVALID_DATE", "must be a date YYYY-MM-DD"
        if self.kind == "lov" and value not in self.values:
            return "INVALID_LOV_VALUE", f"must be one of {list(self.values)}"
        return None

    def view(self) -> Any:
        return list(self.values) if self.kind == "lov" else self.kind


@dataclass(frozen=True)
class Template:
    process_id: int
    name: str
    fields: dict[str, Field]

    def view(self) -> JsonDict:
        return {"process_id": self.process_id, "name": self.name,
                "fields": {name: f.view() for name, f in self.fields.items()}}


class TasApp(EngineApp):
    """The start-process endpoint."""

    name = "tas"

    def __init__(self) -> None:
        self._templates: Registry[int, Template] = Registry()
        super().__init__()

    def deploy(self, process_id: int = 0, fields: Any = None, name: str = "") -> JsonDict:
        """Add or replace a template; ``fields`` maps variable name → field spec."""
        if not (is_int(process_id) and process_id > 0):
            raise ValueError("process_id must be a positive integer")
        template = Template(process_id, name or f"Template {process_id}",
                            {key: Field.parse(spec) for key, spec in (fields or {}).items()})
        return self._templates.put(process_id, template).view()

    def deploy_defaults(self) -> None:
        self.deploy(27, {"processVariable1": "text", "processVariable2": "text",
                         "_isCaseCreatedByAPI": "text", "amount": "number", "dueDate": "date",
                         "priority": ["low", "normal", "high"]}, "Purchase request")
        self.deploy(31, {"customerId": "text", "description": "text", "receivedOn": "date",
                         "severity": ["minor", "major"], "_isCaseCreatedByAPI": "text"},
                    "Customer complaint")

    def routes(self) -> list[Route]:
        return [Route("/api/plugins/api-extensions/start-process", "POST", self._start_process,
                      "start")]

    def error_response(self, request: Request, status: int, message: str,
                       extra: JsonDict) -> Response:
        code = extra.get("code") or (
            "UNAUTHORIZED" if status == 401 else HTTPStatus(status).name)
        error: JsonDict = {"message": message, "code": str(code)}
        if extra.get("field"):
            error["field"] = extra["field"]
        return json_response({"error": error}, status)

    def _start_process(self, request: Request, args: dict[str, Any]) -> Response:
        body = read_json(request)
        if not isinstance(body, dict):
            raise Reject(400, "The body must be a JSON object", code="INVALID_BODY")
        unknown = sorted(set(body) - {"processId", "data"})
        if unknown:
            raise Reject(400, f"Unknown properties {unknown}", code="INVALID_BODY")
        template = self._template(body.get("processId"))
        data = body.get("data", {})
        if not isinstance(data, dict):
            raise Reject(400, "data must be an object", code="INVALID_BODY")
        for name, value in data.items():
            spec = template.fields.get(name)
            if spec is None:
                raise Reject(400, f"Variable '{name}' does not exist on template "
                                  f"{template.process_id}", code="UNKNOWN_VARIABLE", field=name)
            problem = spec.problem(value)
            if problem is not None:
                raise Reject(400, f"Variable '{name}' {problem[1]}", code=problem[0], field=name)
        case_id = FIRST_CASE_ID + self.store.next_sequence() - 1
        self.record(str(case_id), str(template.process_id), variables=data,
                    processId=template.process_id, template=template.name, request=body)
        return json_response({"result": True, "iprocId": case_id})

    def _template(self, process_id: Any) -> Template:
        if not is_int(process_id):
            raise Reject(400, "processId must be a number", code="INVALID_PROCESS_ID")
        template = self._templates.get(process_id)
        if template is None:
            raise Reject(404, f"Process template {process_id} does not exist",
                         code="PROCESS_NOT_FOUND")
        return template


def _is_date(value: str) -> bool:
    if len(value) != 10:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True
