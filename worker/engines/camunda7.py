"""Camunda 7 engine-rest: ``POST /process-definition/.../start``.

Three routes: by key (latest version without tenant), by key and tenant
(``job.tenant_id``), or by definition id (``options.process_definition_id``).
There is no start-by-key-and-version, so a job with ``version`` is invalid.

Variables are typed (``{value, type, valueInfo}``) from their JSON value;
``options.variable_types`` overrides the type per name (ENGINE-NOTES: Json
and Object need a *serialized* string, Date is ``yyyy-MM-dd'T'HH:mm:ss.SSSZ``,
Integer is 32-bit). ISO date strings stay Strings unless overridden: guessing
would turn an order number like ``2026-01-02`` into a Date; a Date override
takes any ISO 8601 date or date-time (naive ones as UTC). ``Object`` needs
``{"type": "Object", "object_type_name": "<Java class>"}``. The overrides
apply by name to start-instruction variables too (sent as process-scope).

Idempotency key carrying (C7 has no request id and no tags):

* job without ``business_key``: the key *is* the businessKey (hashed when it
  exceeds the column's 255 characters), so `lookup` finds the instance with
  one query;
* job with ``business_key``: that stays the businessKey (it is the user's) and
  the key travels as the String variable ``_startproc_key``; `lookup` queries
  by businessKey and confirms the candidates with one variable-instance query
  (runtime, then history), because businessKey is not unique in the engine.

Every error response means C7 rolled the transaction back, so only transport
failures are ambiguous: a 500 is permanent, except optimistic locking (code 1)
and deadlock (code 10000), which a retry can get past.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Annotated, Any, Literal

import requests
from pydantic import Field, JsonValue, StrictBool, StrictStr, model_validator

from worker.engines._shared import (
    check_known,
    is_number,
    parse_iso_datetime,
    reserve_key_variable,
    segment,
)
from worker.engines.base import KEY_VARIABLE, Engine, Options, StartRequest
from worker.errors import InvalidJob, JobError, PermanentError, TransientError
from worker.keys import short_hash
from worker.models import Job

TypeName = Literal[
    "String", "Boolean", "Short", "Integer", "Long", "Double", "Date", "Json", "Xml", "Object",
    "Null",
]
NonEmpty = Annotated[StrictStr, Field(min_length=1)]

INT_RANGES = {"Short": 2**15, "Integer": 2**31, "Long": 2**63}
RETRYABLE_CODES = {1: "optimistic locking", 10000: "deadlock"}
BUSINESS_KEY_MAX = 255
SERIALIZED = {"Json", "Xml", "Object"}
# (instance query, its business key parameter, the matching variable query)
SEARCHES = (
    ("/process-instance", "businessKey", "/variable-instance"),
    ("/history/process-instance", "processInstanceBusinessKey", "/history/variable-instance"),
)
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


class StartInstruction(Options):
    """C7's own instruction shape; only the start types make sense for a new instance."""

    type: Literal["startBeforeActivity", "startAfterActivity", "startTransition"]
    activityId: NonEmpty | None = None
    transitionId: NonEmpty | None = None
    variables: dict[NonEmpty, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _target(self) -> StartInstruction:
        wanted = "transitionId" if self.type == "startTransition" else "activityId"
        other = "activityId" if wanted == "transitionId" else "transitionId"
        if getattr(self, wanted) is None:
            raise ValueError(f"{self.type} needs {wanted}")
        if getattr(self, other) is not None:
            raise ValueError(f"{self.type} takes {wanted}, not {other}")
        return self


class Camunda7Options(Options):
    process_definition_id: NonEmpty | None = None
    variable_types: dict[NonEmpty, TypeName | ObjectType] = Field(default_factory=dict)
    case_instance_id: NonEmpty | None = None
    start_instructions: list[StartInstruction] = Field(default_factory=list)
    skip_custom_listeners: StrictBool = False
    skip_io_mappings: StrictBool = False
    with_variables_in_return: StrictBool = False


def carried_business_key(key: str) -> str:
    """The businessKey that carries ``key`` (the column holds 255 characters)."""
    return key if len(key) <= BUSINESS_KEY_MAX else f"startproc:{short_hash(key, 64)}"


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


class Camunda7(Engine):
    name = "camunda7"
    options_model = Camunda7Options
    supports_lookup = True

    def build_request(self, job: Job, key: str) -> StartRequest:
        opts = self.options(job, Camunda7Options)
        if job.version is not None:
            raise InvalidJob(
                "version: Camunda 7 starts the latest version by key; "
                "use options.process_definition_id for a specific one"
            )
        names = set(job.variables).union(*(i.variables for i in opts.start_instructions))
        reserve_key_variable(names)
        check_known(opts.variable_types, names, "options.variable_types")
        body: dict[str, Any] = {"variables": self._variables(job.variables, opts, "variables")}
        if job.business_key:
            body["businessKey"] = job.business_key
            body["variables"][KEY_VARIABLE] = {"value": key, "type": "String", "valueInfo": {}}
        else:
            body["businessKey"] = carried_business_key(key)
        if opts.case_instance_id:
            body["caseInstanceId"] = opts.case_instance_id
        if opts.start_instructions:
            body["startInstructions"] = [
                self._instruction(item, opts, f"options.start_instructions[{n}]")
                for n, item in enumerate(opts.start_instructions)
            ]
        flags = {
            "skipCustomListeners": opts.skip_custom_listeners,
            "skipIoMappings": opts.skip_io_mappings,
            "withVariablesInReturn": opts.with_variables_in_return,
        }
        body.update({name: True for name, on in flags.items() if on})
        return StartRequest("POST", self._path(job, opts), json=body)

    def _path(self, job: Job, opts: Camunda7Options) -> str:
        if opts.process_definition_id:
            definition = segment(opts.process_definition_id, "options.process_definition_id")
            return f"/process-definition/{definition}/start"
        path = f"/process-definition/key/{segment(job.process_id, 'process')}"
        if job.tenant_id:
            path += f"/tenant-id/{segment(job.tenant_id, 'tenant_id')}"
        return path + "/start"

    @staticmethod
    def _variables(values: dict[str, Any], opts: Camunda7Options, where: str) -> dict[str, Any]:
        return {
            name: typed(value, opts.variable_types.get(name), f"{where}.{name}")
            for name, value in values.items()
        }

    def _instruction(
        self, item: StartInstruction, opts: Camunda7Options, where: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = item.model_dump(exclude_none=True, exclude={"variables"})
        if item.variables:
            out["variables"] = self._variables(item.variables, opts, f"{where}.variables")
        return out

    def classify(self, response: requests.Response, body: Any) -> JobError | None:
        error = super().classify(response, body)
        if error is None or response.status_code != 500:
            return error
        code = body.get("code") if isinstance(body, dict) else None
        if code in RETRYABLE_CODES:
            return TransientError(
                f"{error.message} ({RETRYABLE_CODES[code]}; nothing was started)",
                http_status=500,
                engine_error=body,
            )
        # The engine rolled the start back: retrying the same request fails the same way.
        return PermanentError(error.message, http_status=500, engine_error=body)

    def summarize(self, body: Any) -> str | None:
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            kind = body.get("type")
            return f"{kind}: {body['message']}"[:500] if kind else body["message"][:500]
        return super().summarize(body)

    def probe_request(self) -> StartRequest:
        return StartRequest("GET", "/version")

    def instance_id(self, body: Any) -> str:
        value = body["id"]
        if not isinstance(value, str) or not value:
            raise TypeError("id is not an instance id")
        return value

    def lookup(self, job: Job, key: str) -> str | None:
        """Runtime first (same database, strongly consistent), then history (finished ones)."""
        opts = self.options(job, Camunda7Options)
        scope: dict[str, str] = (
            {"processDefinitionId": opts.process_definition_id}
            if opts.process_definition_id
            else {"processDefinitionKey": job.process_id}
        )
        if job.tenant_id:
            scope["tenantIdIn"] = job.tenant_id
        for instances, business_key_param, variables in SEARCHES:
            query = {business_key_param: job.business_key or carried_business_key(key), **scope}
            found = self.fetch(StartRequest("GET", instances, params=query))
            candidates = [str(i["id"]) for i in found or [] if isinstance(i, dict) and i.get("id")]
            if candidates and job.business_key is None:
                return candidates[0]  # the businessKey *is* the key
            confirmed = self._carrying(variables, candidates, key) if candidates else None
            if confirmed:
                return confirmed
        return None

    def _carrying(self, path: str, candidates: list[str], key: str) -> str | None:
        """The first candidate whose ``_startproc_key`` is ``key``: businessKey is not unique."""
        params = {"variableName": KEY_VARIABLE, "processInstanceIdIn": ",".join(candidates)}
        found = self.fetch(StartRequest("GET", path, params=params))
        owners = {
            str(v.get("processInstanceId"))
            for v in found or []
            if isinstance(v, dict) and v.get("value") == key
        }
        return next((instance for instance in candidates if instance in owners), None)
