"""Camunda 7 engine-rest: ``POST /process-definition/.../start``.

Three routes: by key (latest version without tenant), by key and tenant
(``job.tenant_id``), or by definition id (``options.process_definition_id``).
There is no start-by-key-and-version, so a job with ``version`` is invalid.

Variables are typed (``{value, type, valueInfo}``, `worker.engines.camunda7_values`)
from their JSON value; ``options.variable_types`` overrides the type per
name; a Date override takes any ISO 8601 date or date-time (naive ones as
UTC). ``Object`` needs ``{"type": "Object", "object_type_name": "<Java
class>"}``. The overrides apply by name to start-instruction variables too
(sent as process-scope).

A job with ``message`` instead of ``process`` correlates it:
``POST /message`` with ``resultEnabled`` (the answer names the instance),
the business key as below and the variables as ``processVariables``; only
``options.variable_types`` applies. Camunda 7 matches a *start* message by
name (and tenant) alone, so a ``correlation_key`` is refused. An unknown
name is the engine's 400 (``MismatchingMessageCorrelationException``). A
message that a waiting instance consumed instead of a start event started
nothing: the job fails ``permanent``, naming that instance.

The same API is served by the Camunda 7 forks Operaton and CIB seven
(``engine = "camunda7"``, ``base_url`` their engine-rest root).

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

from typing import Any, Literal

import requests
from pydantic import Field, JsonValue, StrictBool, model_validator

from worker.engines._shared import check_known, reserve_key_variable, segment
from worker.engines.base import KEY_VARIABLE, Engine, Options, StartRequest
from worker.engines.camunda7_values import NonEmpty, ObjectType, TypeName, typed
from worker.engines.messages import refuse_options, start_message
from worker.errors import InvalidJob, JobError, PermanentError, TransientError
from worker.keys import short_hash
from worker.models import Job

RETRYABLE_CODES = {1: "optimistic locking", 10000: "deadlock"}
BUSINESS_KEY_MAX = 255
# (instance query, its business key parameter, the matching variable query)
SEARCHES = (
    ("/process-instance", "businessKey", "/variable-instance"),
    ("/history/process-instance", "processInstanceBusinessKey", "/history/variable-instance"),
)
MESSAGE_PATH = "/message"


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


class Camunda7(Engine):
    name = "camunda7"
    options_model = Camunda7Options
    supports_lookup = True
    supports_messages = True

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
        body: dict[str, Any] = self._carrying_key(job, opts, key, "variables")
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

    def build_message_request(self, job: Job, key: str) -> StartRequest:
        """``POST /message``: name, business key, typed variables, tenant; with the result."""
        message = start_message(job, self.name)
        if message.correlation_key is not None:
            raise InvalidJob(
                "message.correlation_key: Camunda 7 matches a start message by its name "
                "(and tenant) only; leave it unset (the business key travels as businessKey)"
            )
        refuse_options(job, self.name, allowed=("variable_types",))
        opts = self.options(job, Camunda7Options)
        reserve_key_variable(job.variables)
        check_known(opts.variable_types, job.variables, "options.variable_types")
        body: dict[str, Any] = {"messageName": message.name}
        carried = self._carrying_key(job, opts, key, "processVariables")
        body.update(carried)
        if job.tenant_id:
            body["tenantId"] = job.tenant_id
        body["resultEnabled"] = True
        return StartRequest("POST", MESSAGE_PATH, json=body)

    def _carrying_key(
        self, job: Job, opts: Camunda7Options, key: str, variables_field: str
    ) -> dict[str, Any]:
        """The business key and the typed variables, one of them carrying ``key``."""
        variables = self._variables(job.variables, opts, "variables")
        if job.business_key:
            variables[KEY_VARIABLE] = {"value": key, "type": "String", "valueInfo": {}}
            return {variables_field: variables, "businessKey": job.business_key}
        return {variables_field: variables, "businessKey": carried_business_key(key)}

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
        if isinstance(body, list):  # a correlated message: the results, one with all=false
            return _message_instance(body)
        value = body["id"]
        if not isinstance(value, str) or not value:
            raise TypeError("id is not an instance id")
        return value

    def lookup(self, job: Job, key: str) -> str | None:
        """Runtime first (same database, strongly consistent), then history (finished ones)."""
        opts = self.options(job, Camunda7Options)
        scope: dict[str, str] = {}
        if opts.process_definition_id:
            scope["processDefinitionId"] = opts.process_definition_id
        elif job.message is None:  # a message names no process: the business key alone
            scope["processDefinitionKey"] = job.process_id
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


def _message_instance(results: list[Any]) -> str:
    """The instance a correlated start message started (``resultType`` ProcessDefinition).

    A message consumed by a waiting execution started nothing: retrying would
    only deliver it again, so that is a permanent failure naming the instance.
    """
    if len(results) != 1 or not isinstance(results[0], dict):
        raise ValueError("not one correlation result")
    result = results[0]
    if result.get("resultType") == "Execution":
        execution = result.get("execution") or {}
        raise PermanentError(
            "camunda7: the message was consumed by a waiting instance "
            f"({execution.get('processInstanceId')}), not by a message start event: "
            "no instance was started",
            http_status=200,
            engine_error=results,
        )
    value = (result.get("processInstance") or {})["id"]
    if not isinstance(value, str) or not value:
        raise TypeError("processInstance.id is not an instance id")
    return value
