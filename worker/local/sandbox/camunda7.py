"""Camunda 7 engine-rest emulator (routes under ``/engine-rest``, or another base path).

``product`` makes it answer as one of the API-compatible forks: ``operaton``
or ``cibseven`` (their ``/version``, their Java package names in errors);
``base_path`` serves the API elsewhere (a Spring Boot application may mount
it under its own path). A definition may declare a message start event
(``message_start``): ``POST /message`` starts it (``camunda7_messages``).

Start by key (latest version without tenant), by key and tenant, or by
definition id; typed variables converted as the engine does
(``camunda7_variables``); errors are ``{"type", "message", "code"}``
(``code`` as since 7.18), 401 has no body. Look-ups: ``GET /process-instance``
(active instances only) and ``GET /history/process-instance`` (all), both
with ``/count``. Scripted ``{"status": 500, "code": 1}`` gives the optimistic
locking failure (10000: deadlock) worded as the engine words it.

Assumptions: an unknown definition *id* is a 500 ``RestException`` (the
engine's NullValueException, wrapped); unknown body properties and wrongly
typed DTO fields are 400 ``InvalidRequestException``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from worker.local.sandbox.base import EngineApp, Route, next_version
from worker.local.sandbox.camunda7_messages import (
    Correlation,
    correlation_result,
    parse_correlation,
)
from worker.local.sandbox.camunda7_variables import (
    VariableError,
    bind_dto,
    convert_variables,
    plain_value,
)
from worker.local.sandbox.faults import Fault
from worker.local.sandbox.store import Registry
from worker.local.sandbox.web import JsonDict, Reject, java_date, json_response, read_json, utc_now

PRODUCTS = {  # name -> (GET /version, the package of the REST DTOs)
    "camunda7": ("7.24.0", "org.camunda.bpm.engine.rest.dto"),
    "operaton": ("1.0.0", "org.operaton.bpm.engine.rest.dto"),
    "cibseven": ("2.0.0", "org.cibseven.bpm.engine.rest.dto"),
}
_START_FIELDS = {"businessKey": str, "caseInstanceId": str, "variables": dict,
                 "startInstructions": list, "skipCustomListeners": bool,
                 "skipIoMappings": bool, "withVariablesInReturn": bool}
_ERROR_TYPES = {400: "InvalidRequestException", 403: "AuthorizationException"}
_CAUSES = {
    1: "ENGINE-03005 Execution of 'UPDATE ExecutionEntity[{id}]' failed. Entity was updated "
       "by another transaction concurrently.",
    10000: "ENGINE-03083 Exception while executing Batch Database Operations with message "
           "'Deadlock found when trying to get lock; try restarting transaction'.",
}


@dataclass(frozen=True)
class Definition:
    """A deployed process definition (``key:version:uuid`` ids, as the engine makes them)."""

    id: str
    key: str
    version: int
    tenant_id: str | None
    name: str
    message_start: str | None = None

    def view(self) -> JsonDict:
        return {"id": self.id, "key": self.key, "version": self.version,
                "tenantId": self.tenant_id, "name": self.name}


class Camunda7App(EngineApp):
    """engine-rest start and look-up routes."""

    name = "camunda7"

    def __init__(self, base_path: str = "/engine-rest", product: str = "camunda7") -> None:
        if product not in PRODUCTS:
            raise ValueError(f"product must be one of {sorted(PRODUCTS)}, not {product!r}")
        if base_path and (not base_path.startswith("/") or base_path.endswith("/")):
            raise ValueError(f"base_path must start with / and not end with one: {base_path!r}")
        self.base_path = base_path
        self.product = product
        self._definitions: Registry[str, Definition] = Registry()
        super().__init__()

    @property
    def dto_package(self) -> str:
        return PRODUCTS[self.product][1]

    def deploy(self, key: str = "", tenant_id: str | None = None, name: str | None = None,
               version: int | None = None, message_start: str | None = None) -> JsonDict:
        """Deploy ``key`` (next version for that tenant unless given); returns the definition.

        ``message_start``: the name of the definition's message start event.
        """
        if not key:
            raise ValueError("deploy needs a key")

        def make(deployed: list[Definition]) -> tuple[str, Definition]:
            number = next_version((d.version for d in deployed
                                   if d.key == key and d.tenant_id == tenant_id), version, key)
            definition_id = f"{key}:{number}:{uuid.uuid4()}"
            return definition_id, Definition(definition_id, key, number, tenant_id, name or key,
                                             message_start)

        return self._definitions.insert(make).view()

    def deploy_defaults(self) -> None:
        self.deploy("invoice", name="Invoice Receipt")
        self.deploy("invoice", name="Invoice Receipt")
        self.deploy("loan-approval", name="Loan Approval")
        self.deploy("invoice", tenant_id="acme", name="Invoice Receipt")
        self.deploy("invoice-intake", name="Invoice intake", message_start="invoice-received")

    @property
    def definitions(self) -> list[JsonDict]:
        return [definition.view() for definition in self._definitions.values()]

    def routes(self) -> list[Route]:
        root = self.base_path
        return [
            Route(f"{root}/process-definition/key/<key>/start", "POST", self._start_by_key,
                  "start"),
            Route(f"{root}/process-definition/key/<key>/tenant-id/<tenant_id>/start", "POST",
                  self._start_by_key, "start"),
            Route(f"{root}/process-definition/<definition_id>/start", "POST", self._start_by_id,
                  "start"),
            Route(f"{root}/process-instance", "GET", self._runtime_list, "lookup"),
            Route(f"{root}/process-instance/count", "GET", self._runtime_count),
            Route(f"{root}/process-instance/<instance_id>", "GET", self._runtime_one),
            Route(f"{root}/history/process-instance", "GET", self._history_list, "lookup"),
            Route(f"{root}/history/process-instance/count", "GET", self._history_count),
            Route(f"{root}/variable-instance", "GET", self._runtime_variables, "lookup"),
            Route(f"{root}/history/variable-instance", "GET", self._history_variables,
                  "lookup"),
            Route(f"{root}/message", "POST", self._correlate, "start"),
            Route(f"{root}/version", "GET",
                  lambda request, args: json_response({"version": PRODUCTS[self.product][0]})),
        ]

    # -- errors ----------------------------------------------------------------------

    def error_response(self, request: Request, status: int, message: str,
                       extra: JsonDict) -> Response:
        if status == 401:  # the auth filter answers without a body
            return Response(status=401, headers={"WWW-Authenticate": 'Basic realm="default"'})
        error_type = extra.get("type") or _ERROR_TYPES.get(status, "RestException")
        return json_response({"type": error_type, "message": message,
                              "code": extra.get("code")}, status)

    def fault_message(self, status: int, fault: Fault, args: dict[str, Any]) -> str:
        if status != 500:
            return super().fault_message(status, fault, args)
        target = args.get("definition_id") or args.get("key", "")
        cause = _CAUSES.get(fault.code or 0, "ENGINE-16004 Exception while closing command "
                                             "context: internal error")
        return f"Cannot instantiate process definition {target}: " + cause.format(
            id=uuid.uuid4())

    # -- start ---------------------------------------------------------------------------

    def _start_by_key(self, request: Request, args: dict[str, Any]) -> Response:
        key, tenant = args["key"], args.get("tenant_id")
        candidates = [d for d in self._definitions.values()
                      if d.key == key and d.tenant_id == tenant]
        if not candidates:
            scope = "no tenant-id" if tenant is None else f"tenant-id: {tenant}"
            raise Reject(404, f"No matching process definition with key: {key} and {scope}")
        return self._create(request, max(candidates, key=lambda d: d.version))

    def _start_by_id(self, request: Request, args: dict[str, Any]) -> Response:
        definition_id = args["definition_id"]
        definition = self._definitions.get(definition_id)
        if definition is None:
            raise Reject(500, f"Cannot instantiate process definition {definition_id}: no "
                              f"deployed process definition found with id '{definition_id}': "
                              "processDefinition is null", code=0)
        return self._create(request, definition)

    def _create(self, request: Request, definition: Definition) -> Response:
        body = read_json(request, empty={})
        bind_dto(body, _START_FIELDS, f"{self.dto_package}.runtime.StartProcessInstanceDto",
                 "Cannot deserialize the request body into StartProcessInstanceDto: it is not "
                 "a JSON object")
        typed = self._typed(body.get("variables"), definition)
        instance_id = self._instantiate(definition, typed, body.get("businessKey"), body,
                                        caseInstanceId=body.get("caseInstanceId"))
        view = self._instance_view(request, instance_id, definition, body.get("businessKey"),
                                   body.get("caseInstanceId"))
        if body.get("withVariablesInReturn"):
            view["variables"] = typed
        return json_response(view)

    def _typed(self, variables: Any, definition: Definition) -> JsonDict:
        try:
            return convert_variables(variables)
        except VariableError as exc:
            raise Reject(400, f"Cannot instantiate process definition {definition.id}: {exc}",
                         type="InvalidRequestException") from exc

    def _instantiate(self, definition: Definition, typed: JsonDict, business_key: str | None,
                     body: JsonDict, **extra: Any) -> str:
        instance_id = str(uuid.uuid4())
        extra.setdefault("caseInstanceId", None)
        self.record(
            instance_id, definition.key, version=definition.version,
            variables={name: plain_value(value) for name, value in typed.items()},
            business_key=business_key, tenant_id=definition.tenant_id,
            definitionId=definition.id, definitionName=definition.name,
            typed_variables=typed, started_at=java_date(utc_now()), request=body, **extra)
        return instance_id

    def _correlate(self, request: Request, args: dict[str, Any]) -> Response:
        """``POST /message`` to the message start events of the newest definitions."""
        message = parse_correlation(read_json(request, empty={}), self.dto_package)
        targets = [] if message.executions_only else self._message_targets(message)
        if not targets:
            raise message.mismatch()
        if len(targets) > 1 and not message.all:
            raise Reject(400, f"Cannot correlate message '{message.name}': {len(targets)} "
                              "process definitions match the parameters, expected one",
                         type="RestException")
        results = []
        for definition in targets:
            typed = self._typed(message.variables, definition)
            instance_id = self._instantiate(definition, typed, message.business_key,
                                            {"messageName": message.name}, message=message.name)
            view = self._instance_view(request, instance_id, definition, message.business_key,
                                       None)
            results.append(correlation_result(view, typed if message.variables_in_result
                                              else None))
        return json_response(results) if message.result_enabled else Response(status=204)

    def _message_targets(self, message: Correlation) -> list[Definition]:
        newest: dict[tuple[str, str | None], Definition] = {}
        for d in self._definitions.values():
            current = newest.get((d.key, d.tenant_id))
            if current is None or d.version > current.version:
                newest[(d.key, d.tenant_id)] = d
        return [d for d in newest.values()
                if d.message_start == message.name and message.admits(d.tenant_id)]

    def _instance_view(self, request: Request, instance_id: str, definition: Definition,
                       business_key: str | None, case_instance_id: str | None) -> JsonDict:
        href = f"{request.root_url}{self.base_path.lstrip('/')}/process-instance/{instance_id}"
        return {"links": [{"method": "GET", "href": href, "rel": "self"}],
                "id": instance_id, "definitionId": definition.id,
                "businessKey": business_key, "caseInstanceId": case_instance_id,
                "tenantId": definition.tenant_id, "ended": False, "suspended": False}

    # -- look-ups ------------------------------------------------------------------------

    def _runtime_list(self, request: Request, args: dict[str, Any]) -> Response:
        found = self._query(request, "businessKey", "processInstanceIds", active_only=True)
        return json_response([self._runtime_view(record) for record in _paged(request, found)])

    def _runtime_count(self, request: Request, args: dict[str, Any]) -> Response:
        found = self._query(request, "businessKey", "processInstanceIds", active_only=True)
        return json_response({"count": len(found)})

    def _runtime_one(self, request: Request, args: dict[str, Any]) -> Response:
        found = self.store.find(lambda r: r["id"] == args["instance_id"]
                                and r["state"] == "ACTIVE")
        if not found:
            raise Reject(404, f"Process instance with id {args['instance_id']} does not exist",
                         type="InvalidRequestException")
        return json_response(self._runtime_view(found[0]))

    def _history_list(self, request: Request, args: dict[str, Any]) -> Response:
        found = self._query(request, "processInstanceBusinessKey", "processInstanceIds",
                            active_only=False)
        return json_response([_history_view(record) for record in _paged(request, found)])

    def _history_count(self, request: Request, args: dict[str, Any]) -> Response:
        found = self._query(request, "processInstanceBusinessKey", "processInstanceIds",
                            active_only=False)
        return json_response({"count": len(found)})

    def _query(self, request: Request, business_key_param: str, ids_param: str,
               active_only: bool) -> list[JsonDict]:
        params = request.args
        ids = set(filter(None, params.get(ids_param, "").split(",")))
        if params.get("processInstanceId"):
            ids.add(params["processInstanceId"])
        tenants = set(filter(None, params.get("tenantIdIn", "").split(",")))
        without_tenant = _bool_param(params, "withoutTenantId")
        finished = _bool_param(params, "finished")
        unfinished = _bool_param(params, "unfinished")
        equal = {"business_key": params.get(business_key_param),
                 "process": params.get("processDefinitionKey"),
                 "definitionId": params.get("processDefinitionId")}

        def matches(record: JsonDict) -> bool:
            active = record["state"] == "ACTIVE"
            return (all(value is None or record[field] == value for field, value in
                        equal.items())
                    and (not ids or record["id"] in ids)
                    and (not tenants or record["tenant_id"] in tenants)
                    and (not without_tenant or record["tenant_id"] is None)
                    and (active or not (active_only or unfinished))
                    and (not active or not finished))

        return self.store.find(matches)

    def _runtime_variables(self, request: Request, args: dict[str, Any]) -> Response:
        return json_response(self._variables(request, active_only=True))

    def _history_variables(self, request: Request, args: dict[str, Any]) -> Response:
        return json_response(self._variables(request, active_only=False))

    def _variables(self, request: Request, active_only: bool) -> list[JsonDict]:
        """``variableName`` + ``processInstanceIdIn``: the subset the worker's lookup uses."""
        name = request.args.get("variableName")
        ids = set(filter(None, request.args.get("processInstanceIdIn", "").split(",")))
        found = []
        for record in self.store.find(lambda r: (not ids or r["id"] in ids)
                                      and (r["state"] == "ACTIVE" or not active_only)):
            for var_name, typed in record["typed_variables"].items():
                if name is None or var_name == name:
                    found.append({"id": f"{record['id']}:{var_name}", "name": var_name,
                                  "type": typed.get("type"), "value": typed.get("value"),
                                  "valueInfo": typed.get("valueInfo", {}),
                                  "processInstanceId": record["id"],
                                  "tenantId": record["tenant_id"]})
        return found

    def _runtime_view(self, record: JsonDict) -> JsonDict:
        return {"links": [], "id": record["id"], "definitionId": record["definitionId"],
                "definitionKey": record["process"], "businessKey": record["business_key"],
                "caseInstanceId": record["caseInstanceId"], "ended": False,
                "suspended": False, "tenantId": record["tenant_id"]}


def _history_view(record: JsonDict) -> JsonDict:
    finished = record["state"] != "ACTIVE"
    return {
        "id": record["id"], "rootProcessInstanceId": record["id"],
        "superProcessInstanceId": None, "superCaseInstanceId": None,
        "caseInstanceId": record["caseInstanceId"],
        "processDefinitionName": record["definitionName"],
        "processDefinitionKey": record["process"],
        "processDefinitionVersion": record["version"],
        "processDefinitionId": record["definitionId"],
        "businessKey": record["business_key"], "startTime": record["started_at"],
        "endTime": record.get("ended_at") if finished else None,
        "removalTime": None, "durationInMillis": None, "startUserId": None,
        "startActivityId": "StartEvent_1", "deleteReason": None,
        "tenantId": record["tenant_id"], "state": record["state"],
        "restartedProcessInstanceId": None,
    }


def _bool_param(params: MultiDict[str, str], name: str) -> bool:
    raw = params.get(name)
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise Reject(400, f"Cannot set query parameter '{name}' to value '{raw}'")
    return bool(raw == "true")


def _paged(request: Request, records: list[JsonDict]) -> list[JsonDict]:
    def number(name: str, default: int) -> int:
        raw = request.args.get(name)
        if raw is None:
            return default
        if not raw.isdigit():
            raise Reject(400, f"Cannot set query parameter '{name}' to value '{raw}'")
        return int(raw)

    first = number("firstResult", 0)
    return records[first:first + number("maxResults", len(records))]
