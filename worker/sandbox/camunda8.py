"""Camunda 8 Orchestration Cluster REST API (``/v2``) emulator.

Behaviour per ``api_version`` (see ENGINE-NOTES / CONTRACT):

* ``8.8`` (default) — ``processDefinitionId``/``processDefinitionVersion`` or
  ``processDefinitionKey`` (string ``^-?[0-9]+$``), ``tags``,
  ``runtimeInstructions``; unknown fields → 400; string keys in responses;
  backpressure 503 ``RESOURCE_EXHAUSTED``.
* ``8.9`` — as 8.8 plus ``businessId`` (request, response, search filter);
  ``configure(business_id_unique=True)`` turns on the engine's uniqueness
  control (409 ``ALREADY_EXISTS`` while an active instance has the same id).
* ``8.6`` — 8.6/8.7 GA: same names without ``tags``/``runtimeInstructions``,
  keys are JSON numbers (a numeric string key is accepted too, as Jackson
  coerces it); backpressure 429.
* ``8.6-alpha`` — seed 001: ``bpmnProcessId``/``version`` and a numeric
  ``processDefinitionKey``; the response says ``processKey``/``bpmnProcessId``/
  ``version``; backpressure 429.

Assumption: unknown request fields are rejected on every version (the 8.8+
``additionalProperties: false``), so an adapter that sends a field its version
lacks fails here rather than silently losing it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from werkzeug.wrappers import Request, Response

from worker.sandbox.base import EngineApp, Route, next_version
from worker.sandbox.camunda8_request import (
    DIALECTS,
    PROCESS_ID,
    CreationCommand,
    parse_creation,
)
from worker.sandbox.camunda8_search import SearchQuery
from worker.sandbox.faults import Fault
from worker.sandbox.store import Registry
from worker.sandbox.web import JsonDict, Reject, json_response, read_json

DEFAULT_TENANT = "<default>"
FIRST_INSTANCE_KEY = 2251799813685249
FIRST_DEFINITION_KEY = 2251799813684001
VERSIONS = tuple(DIALECTS)

_TITLES = {400: "INVALID_ARGUMENT", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
           409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
           503: "RESOURCE_EXHAUSTED", 504: "DEADLINE_EXCEEDED"}
_BACKPRESSURE = ("Expected to execute the command on one of the partitions, but all failed; "
                 "there are no more partitions available to retry. Please try again. If the "
                 "error persists contact your zeebe operator")


@dataclass(frozen=True)
class Definition:
    """A deployed process definition."""

    process_id: str
    version: int
    key: int
    tenant_id: str
    name: str

    def view(self) -> JsonDict:
        return {"processDefinitionId": self.process_id, "processDefinitionVersion": self.version,
                "processDefinitionKey": str(self.key), "tenantId": self.tenant_id,
                "name": self.name}


class Camunda8App(EngineApp):
    """``POST /v2/process-instances`` and ``POST /v2/process-instances/search``."""

    name = "camunda8"
    issues_tokens = True

    def __init__(self, api_version: str = "8.8") -> None:
        self._definitions: Registry[int, Definition] = Registry()
        self._create_lock = threading.Lock()
        self.dialect = DIALECTS["8.8"]
        self.business_id_unique = False
        super().__init__()
        self.configure_version(api_version)

    # -- configuration and deployments ----------------------------------------

    def configure_version(self, api_version: str) -> None:
        if api_version not in DIALECTS:
            raise ValueError(f"api_version must be one of {VERSIONS}, not {api_version!r}")
        self.dialect = DIALECTS[api_version]

    def configure(self, **options: Any) -> JsonDict:
        """``api_version`` and ``business_id_unique`` (8.9 uniqueness control)."""
        unknown = set(options) - {"api_version", "business_id_unique"}
        if unknown:
            raise TypeError(f"camunda8 has no options {sorted(unknown)}")
        if "api_version" in options:
            self.configure_version(str(options["api_version"]))
        if "business_id_unique" in options:
            self.business_id_unique = bool(options["business_id_unique"])
        return {"api_version": self.dialect.version,
                "business_id_unique": self.business_id_unique}

    def deploy(self, process_id: str = "", version: int | None = None,
               tenant_id: str = DEFAULT_TENANT, name: str | None = None) -> JsonDict:
        """Deploy ``process_id`` (next version unless given); returns its definition."""
        if not PROCESS_ID.match(process_id):
            raise ValueError(f"invalid process id {process_id!r}")

        def make(deployed: list[Definition]) -> tuple[int, Definition]:
            number = next_version((d.version for d in deployed if d.process_id == process_id
                                   and d.tenant_id == tenant_id), version, process_id)
            key = FIRST_DEFINITION_KEY + len(deployed)
            return key, Definition(process_id, number, key, tenant_id, name or process_id)

        return self._definitions.insert(make).view()

    def deploy_defaults(self) -> None:
        for version in (1, 2, 3):
            self.deploy("order-process", version, name="Order process")
        self.deploy("demo-process", 1, name="Demo process")
        self.deploy("invoice", 1, name="Invoice")

    @property
    def definitions(self) -> list[JsonDict]:
        return [definition.view() for definition in self._definitions.values()]

    # -- HTTP ----------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("/v2/process-instances", "POST", self._create, "start"),
            Route("/v2/process-instances/search", "POST", self._search, "lookup"),
            Route("/v2/topology", "GET", self._topology),
        ]

    @property
    def transient_status(self) -> int:
        return self.dialect.backpressure

    def fault_message(self, status: int, fault: Fault, args: dict[str, Any]) -> str:
        if _TITLES.get(status) == "RESOURCE_EXHAUSTED":
            return _BACKPRESSURE
        return super().fault_message(status, fault, args)

    def error_response(self, request: Request, status: int, message: str,
                       extra: JsonDict) -> Response:
        """RFC 7807 problem detail, as the gateway answers every error."""
        title = extra.get("title") or _TITLES.get(status) or HTTPStatus(status).phrase
        body = {"type": "about:blank", "title": title, "status": status, "detail": message,
                "instance": request.path}
        return json_response(body, status, content_type="application/problem+json")

    def unauthorized_response(self, request: Request) -> Response:
        return self.error_response(request, 401, "The request is not authenticated: "
                                   "missing or invalid credentials", {})

    def _create(self, request: Request, args: dict[str, Any]) -> Response:
        body = read_json(request)
        if not isinstance(body, dict):
            raise Reject(400, "Request body is missing or is not a JSON object")
        command = parse_creation(body, self.dialect)
        definition = self._resolve(command)
        with self._create_lock:
            self._check_business_id(command, definition)
            key = FIRST_INSTANCE_KEY + self.store.next_sequence() - 1
            record = self.record(
                str(key), definition.process_id, version=definition.version,
                variables=command.variables, business_key=command.business_id,
                tenant_id=definition.tenant_id, tags=command.tags,
                state="COMPLETED" if command.await_completion else "ACTIVE",
                processDefinitionKey=str(definition.key), processDefinitionName=definition.name,
                businessId=command.business_id, operationReference=command.operation_reference,
                startInstructions=command.start_instructions, api_version=self.dialect.version,
                request=body)
        return json_response(self._created_view(record, definition, command))

    def _resolve(self, command: CreationCommand) -> Definition:
        tenant = command.tenant_id or DEFAULT_TENANT
        if command.definition_key is not None:
            found = self._definitions.get(command.definition_key)
            if found is None or found.tenant_id != tenant:
                raise Reject(404, "Expected to find process definition with key "
                                  f"'{command.definition_key}', but none found")
            return found
        candidates = [d for d in self._definitions.values()
                      if d.process_id == command.process_id and d.tenant_id == tenant]
        if command.version is not None and command.version != -1:
            candidates = [d for d in candidates if d.version == command.version]
        if not candidates:
            detail = f"process ID '{command.process_id}'"
            if command.version not in (None, -1):
                detail += f" and version '{command.version}'"
            raise Reject(404, f"Expected to find process definition with {detail}, "
                              "but none found")
        return max(candidates, key=lambda d: d.version)

    def _check_business_id(self, command: CreationCommand, definition: Definition) -> None:
        if not (self.business_id_unique and command.business_id):
            return
        clash = self.store.find(lambda r: r["businessId"] == command.business_id
                                and r["process"] == definition.process_id
                                and r["tenant_id"] == definition.tenant_id
                                and r["state"] == "ACTIVE")
        if clash:
            raise Reject(409, f"Expected to create process instance with business id "
                              f"'{command.business_id}', but an active instance with this "
                              f"business id already exists: {clash[0]['id']}")

    def _created_view(self, record: JsonDict, definition: Definition,
                      command: CreationCommand) -> JsonDict:
        dialect = self.dialect
        variables: JsonDict = {}
        if command.await_completion:
            wanted = command.fetch_variables
            variables = {k: v for k, v in record["variables"].items() if not wanted or k in wanted}
        view: JsonDict = {
            dialect.definition_key_out: self._key(definition.key),
            dialect.id_field: definition.process_id,
            dialect.version_field: definition.version,
            "processInstanceKey": self._key(int(record["id"])),
            "tenantId": definition.tenant_id,
            "variables": variables,
        }
        if "tags" in dialect.extra_fields:
            view["tags"] = record["tags"]
        if "businessId" in dialect.extra_fields:
            view["businessId"] = command.business_id
        return view

    def _key(self, key: int) -> str | int:
        return str(key) if self.dialect.string_keys else key

    def _search(self, request: Request, args: dict[str, Any]) -> Response:
        body = read_json(request, empty={})
        query = SearchQuery.parse(body, allow_business_id="businessId" in
                                  self.dialect.extra_fields)
        matches = self.store.find(query.matches, min_age_s=self.faults.search_lag_s)
        page = query.page(matches)
        return json_response({
            "items": [self._search_item(record) for record in page],
            "page": {"totalItems": len(matches), "hasMoreTotalItems": False},
        })

    def _search_item(self, record: JsonDict) -> JsonDict:
        item: JsonDict = {
            "processInstanceKey": self._key(int(record["id"])),
            "processDefinitionKey": self._key(int(record["processDefinitionKey"])),
            "processDefinitionId": record["process"],
            "processDefinitionName": record["processDefinitionName"],
            "processDefinitionVersion": record["version"],
            "startDate": record["created_at"],
            "state": record["state"],
            "hasIncident": False,
            "tenantId": record["tenant_id"],
        }
        if "tags" in self.dialect.extra_fields:
            item["tags"] = record["tags"]
        if "businessId" in self.dialect.extra_fields:
            item["businessId"] = record["businessId"]
        return item

    def _topology(self, request: Request, args: dict[str, Any]) -> Response:
        """Cheap health check, as worker connectivity checks use it."""
        return json_response({"brokers": [], "clusterSize": 1, "partitionsCount": 1,
                              "replicationFactor": 1, "gatewayVersion": self.dialect.version})
