"""ProcessMaker 4 core API emulator (routes under ``/api/1.0``).

``POST /process_events/{process_id}?event={node}`` answers like
``ProcessController@triggerStartEvent``: unknown process or a missing/unknown
event → 404 ``{"error": "Not Found"}``; a process the user may not start →
403; a body that is not a JSON object → 422 (Laravel ``{message, errors}``);
a node that is not a start event → 500; success 201 with the request
resource (``data`` only with ``?include=data``). The sandbox has one user
(id 1, "admin"): every valid token or credential is that user.

Look-up ``GET /requests?type=all&include=data&pmql=...`` understands
``field = "string"`` / ``field = number`` conditions joined by ``AND``, where
field is ``data.<path>``, ``id``, ``process_id``, ``user_id`` or ``status``;
anything else → 400 ``{"message": "Your PMQL contains invalid syntax."}``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from worker.local.sandbox.base import EngineApp, Route
from worker.local.sandbox.faults import Fault
from worker.local.sandbox.store import Registry
from worker.local.sandbox.web import (
    BodyError,
    JsonDict,
    Reject,
    is_number,
    json_response,
    read_json,
    utc_now,
)

USER_ID = 1
_PMQL_CONDITION = re.compile(
    r'\s*(?P<field>data(?:\.[A-Za-z_][A-Za-z0-9_]*)+|id|process_id|user_id|status)\s*=\s*'
    r'(?:"(?P<text>(?:[^"\\]|\\.)*)"|(?P<number>-?\d+(?:\.\d+)?))\s*',
)
_PMQL_AND = re.compile(r"AND\b", re.IGNORECASE)
_TYPES = {"all": None, "in_progress": "ACTIVE", "completed": "COMPLETED", "started_me": None}


@dataclass(frozen=True)
class Process:
    """A deployed process: which nodes are start events, whether the user may start it."""

    id: int
    name: str
    start_events: tuple[str, ...]
    other_nodes: tuple[str, ...] = ()
    startable: bool = True

    def view(self) -> JsonDict:
        return {"id": self.id, "name": self.name, "start_events": list(self.start_events),
                "other_nodes": list(self.other_nodes), "startable": self.startable}


class ProcessMaker4App(EngineApp):
    """Start-event trigger and request listing."""

    name = "processmaker4"
    base_path = "/api/1.0"
    issues_tokens = True

    def __init__(self) -> None:
        self._processes: Registry[int, Process] = Registry()
        super().__init__()

    def deploy(self, process_id: int = 0, name: str = "", start_events: Any = ("node_1",),
               other_nodes: Any = (), startable: bool = True) -> JsonDict:
        """Add or replace a process; returns it."""
        if not (isinstance(process_id, int) and process_id > 0):
            raise ValueError("process_id must be a positive integer")
        process = Process(process_id, name or f"Process {process_id}", tuple(start_events),
                          tuple(other_nodes), bool(startable))
        return self._processes.put(process_id, process).view()

    def deploy_defaults(self) -> None:
        self.deploy(1, "Onboarding", ["node_1"], ["node_5"])
        self.deploy(7, "Expense", ["node_1", "node_9"])
        self.deploy(9, "Payroll", ["node_1"], startable=False)

    def routes(self) -> list[Route]:
        root = self.base_path
        return [
            Route(f"{root}/process_events/<process_id>", "POST", self._trigger, "start"),
            Route(f"{root}/requests", "GET", self._list, "lookup"),
            Route(f"{root}/requests/<request_id>", "GET", self._show),
        ]

    def error_response(self, request: Request, status: int, message: str,
                       extra: JsonDict) -> Response:
        if status == 404:
            return json_response({"error": "Not Found"}, 404)
        if status == 401:
            return json_response({"error": "Unauthenticated."}, 401)
        body: JsonDict = {"message": message}
        if status == 422:
            body["errors"] = extra.get("errors", {})
        return json_response(body, status)

    def fault_message(self, status: int, fault: Fault, args: dict[str, Any]) -> str:
        return {500: "Server Error", 429: "Too Many Attempts."}.get(
            status, super().fault_message(status, fault, args))

    # -- start ---------------------------------------------------------------------------

    def _trigger(self, request: Request, args: dict[str, Any]) -> Response:
        process = self._process(args["process_id"])
        if not process.startable:
            raise Reject(403, "This action is unauthorized.")
        data = _request_data(request)
        event = request.args.get("event")
        if event is None or event not in (*process.start_events, *process.other_nodes):
            raise Reject(404, "Not Found")
        if event not in process.start_events:
            raise Reject(500, "Server Error")
        number = self.store.next_sequence()
        now = _laravel_time(utc_now())
        record = self.record(str(number), str(process.id), variables=data, event=event,
                             user_id=USER_ID, name=process.name, initiated_at=now,
                             updated_at=now, request=data)
        return json_response(self._view(record, request), 201)

    def _process(self, raw_id: str) -> Process:
        process = self._processes.get(int(raw_id)) if raw_id.isdigit() else None
        if process is None:
            raise Reject(404, "Not Found")
        return process

    def _view(self, record: JsonDict, request: Request) -> JsonDict:
        view: JsonDict = {
            "id": int(record["id"]), "process_id": int(record["process"]),
            "user_id": record["user_id"], "status": record["state"], "name": record["name"],
            "initiated_at": record["initiated_at"], "created_at": record["initiated_at"],
            "updated_at": record["updated_at"],
        }
        if "data" in request.args.get("include", "").split(","):
            view["data"] = record["variables"]
        return view

    # -- look-ups ------------------------------------------------------------------------

    def _list(self, request: Request, args: dict[str, Any]) -> Response:
        kind = request.args.get("type", "all")
        if kind not in _TYPES:
            raise Reject(422, "The selected type is invalid.",
                         errors={"type": ["The selected type is invalid."]})
        conditions = parse_pmql(request.args.get("pmql", ""))
        state = _TYPES[kind]
        found = self.store.find(lambda r: (state is None or r["state"] == state)
                                and all(_condition_holds(r, c) for c in conditions))
        per_page = _positive(request.args.get("per_page"), 10)
        page = _positive(request.args.get("page"), 1)
        items = found[(page - 1) * per_page:page * per_page]
        last_page = max(1, math.ceil(len(found) / per_page))
        meta = {"count": len(items), "total": len(found), "per_page": per_page,
                "current_page": page, "last_page": last_page, "total_pages": last_page,
                "from": (page - 1) * per_page + 1 if items else None,
                "to": (page - 1) * per_page + len(items) if items else None,
                "path": request.base_url, "filter": request.args.get("filter", ""),
                "sort_by": request.args.get("order_by", "id"),
                "sort_order": request.args.get("order_direction", "asc")}
        return json_response({"data": [self._view(r, request) for r in items], "meta": meta})

    def _show(self, request: Request, args: dict[str, Any]) -> Response:
        found = self.store.find(lambda r: r["id"] == args["request_id"])
        if not found:
            raise Reject(404, "Not Found")
        return json_response(self._view(found[0], request))


def parse_pmql(query: str) -> list[tuple[str, Any]]:
    """``data.a = "x" AND process_id = 7`` → ``[("data.a", "x"), ("process_id", 7)]``."""
    conditions: list[tuple[str, Any]] = []
    position, text = 0, query.strip()
    while text and position < len(text):
        match = _PMQL_CONDITION.match(text, position)
        if match is None:
            raise Reject(400, "Your PMQL contains invalid syntax.")
        literal: Any = (json.loads(f'"{match["text"]}"') if match["text"] is not None
                        else json.loads(match["number"]))
        conditions.append((match["field"], literal))
        position = match.end()
        if position < len(text):
            joiner = _PMQL_AND.match(text, position)
            if joiner is None or joiner.end() == len(text):
                raise Reject(400, "Your PMQL contains invalid syntax.")
            position = joiner.end()
    return conditions


def _condition_holds(record: JsonDict, condition: tuple[str, Any]) -> bool:
    field, literal = condition
    if field.startswith("data."):
        value: Any = record["variables"]
        for part in field.split(".")[1:]:
            if not isinstance(value, dict) or part not in value:
                return False
            value = value[part]
    else:
        value = {"id": int(record["id"]), "process_id": int(record["process"]),
                 "user_id": record["user_id"], "status": record["state"]}[field]
    if isinstance(literal, str):
        return value == literal or (is_number(value) and json.dumps(value) == literal)
    return is_number(value) and value == literal


def _request_data(request: Request) -> JsonDict:
    try:
        data = read_json(request, empty={})
    except BodyError:
        data = None
    if not isinstance(data, dict):
        message = "The data must be an object."
        raise Reject(422, message, errors={"data": [message]})
    return data


def _laravel_time(moment: datetime) -> str:
    """``2026-01-02T03:04:05+00:00``: how ProcessMaker serializes dates."""
    return moment.replace(microsecond=0).isoformat()


def _positive(raw: str | None, default: int) -> int:
    return int(raw) if raw is not None and raw.isdigit() and int(raw) > 0 else default
