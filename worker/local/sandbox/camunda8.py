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

import re
import threading
from http import HTTPStatus
from typing import Any

from werkzeug.wrappers import Request, Response

from worker.local.sandbox.base import EngineApp, Route, next_version
from worker.local.sandbox.camunda8_definitions import Definition, latest, search_definitions
from worker.local.sandbox.camunda8_request import (
    DIALECTS,
    PROCESS_ID,
    CreationCommand,
    parse_creation,
)
from worker.local.sandbox.camunda8_search import SearchQuery
from worker.local.sandbox.faults import Fault
from worker.local.sandbox.store import Registry
from worker.local.sandbox.web import JsonDict, Reject, json_response, read_json, read_json_object

DEFAULT_TENANT = "<default>"
FIRST_INSTANCE_KEY = 2251799813685249
FIRST_DEFINITION_KEY = 2251799813684001
FIRST_MESSAGE_KEY = 2251799813683001
_TENANT = re.compile(r"^(<default>|[A-Za-z0-9_@.+-]{1,256})$")
_MESSAGE_FIELDS = {"name": str, "correlationKey": str, "variables": dict, "tenantId": str}
VERSIONS = tuple(DIALECTS)

_TITLES = {400: "INVALID_ARGUMENT", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
           409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
           503: "RESOURCE_EXHAUSTED", 504: "DEADLINE_EXCEEDED"}
_BACKPRESSURE = ("Expected to execute the command on one of the partitions, but all failed; "
                 "there are no more partitions available to retry. Please try again. If the "
                 "error persists contact your zeebe operator")


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
               tenant_id: str = DEFAULT_TENANT, name: str | None = None,
               version_tag: str | None = None, message_start: str | None = None) -> JsonDict:
        """Deploy ``process_id`` (next version unless given); returns its definition.

        ``message_start``: the name of the definition's message start event.
        """
        if not PROCESS_ID.match(process_id):
            raise ValueError(f"invalid process id {process_id!r}")

        def make(deployed: list[Definition]) -> tuple[int, Definition]:
            number = next_version((d.version for d in deployed if d.process_id == process_id
                                   and d.tenant_id == tenant_id), version, process_id)
            key = FIRST_DEFINITION_KEY + len(deployed)
            return key, Definition(process_id, number, key, tenant_id, name or process_id,
                                   version_tag, message_start)

        return self._definitions.insert(make).view()

    def deploy_defaults(self) -> None:
        for version, tag in ((1, "1.0"), (2, "2.0"), (3, "2.0")):
            self.deploy("order-process", version, name="Order process", version_tag=tag)
        self.deploy("demo-process", 1, name="Demo process")
        self.deploy("invoice", 1, name="Invoice")
        self.deploy("order-intake", 1, name="Order intake", message_start="order-received")

    @property
    def definitions(self) -> list[JsonDict]:
        return [definition.view() for definition in self._definitions.values()]

    # -- HTTP ----------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("/v2/process-instances", "POST", self._create, "start"),
            Route("/v2/process-instances/search", "POST", self._search, "lookup"),
            Route("/v2/messages/correlation", "POST", self._correlate, "start"),
            Route("/v2/process-definitions/search", "POST", self._search_definitions),
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

    def _correlate(self, request: Request, args: dict[str, Any]) -> Response:
        """Correlate a message to the message start events of the newest definitions.

        Only message *start* events are emulated (no instance waits for a
        message), and the engine's one-active-instance-per-correlation-key
        rule for message starts is not. Assumption: an unknown name answers 404
        NOT_FOUND worded as the broker words a correlation without a subscription.
        """
        body = read_json_object(request)
        _check_message(body)
        tenant = body.get("tenantId") or DEFAULT_TENANT
        name, correlation_key = body["name"], body.get("correlationKey", "")
        targets = [d for d in latest(self._definitions.values())
                   if d.message_start == name and d.tenant_id == tenant]
        if not targets:
            raise Reject(404, f"Expected to find subscription for message with name '{name}' "
                              f"and correlation key '{correlation_key}', but none was found.")
        message_key = FIRST_MESSAGE_KEY + self.store.next_sequence()
        keys = []
        with self._create_lock:
            for definition in sorted(targets, key=lambda d: d.key):
                key = FIRST_INSTANCE_KEY + self.store.next_sequence() - 1
                self.record(
                    str(key), definition.process_id, version=definition.version,
                    variables=body.get("variables") or {}, tenant_id=definition.tenant_id,
                    state="ACTIVE", processDefinitionKey=str(definition.key),
                    processDefinitionName=definition.name, businessId=None,
                    message=name, correlationKey=correlation_key,
                    api_version=self.dialect.version, request=body)
                keys.append(key)
        return json_response({"messageKey": self._key(message_key), "tenantId": tenant,
                              "processInstanceKey": self._key(keys[0])})

    def _search_definitions(self, request: Request, args: dict[str, Any]) -> Response:
        found = search_definitions(read_json(request, empty={}), self._definitions.values())
        return json_response({
            "items": [d.search_item(self.dialect.string_keys) for d in found],
            "page": {"totalItems": len(found), "hasMoreTotalItems": False},
        })

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


def _check_message(body: JsonDict) -> None:
    """``MessageCorrelationRequest``: ``additionalProperties: false``, ``name`` required."""
    problems = [f"Request property [{name}] cannot be parsed"
                for name in body if name not in _MESSAGE_FIELDS]
    if not isinstance(body.get("name"), str):
        problems.append("No name provided.")
    for name, kind in _MESSAGE_FIELDS.items():
        if name in body and not isinstance(body[name], kind):
            problems.append(f"The provided {name} must be a {kind.__name__}.")
    tenant = body.get("tenantId")
    if isinstance(tenant, str) and not _TENANT.match(tenant):
        problems.append(f"The provided tenantId must match {_TENANT.pattern}.")
    if problems:
        raise Reject(400, " ".join(problems))
