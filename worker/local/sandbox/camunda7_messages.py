"""Camunda 7 emulator: ``POST /message`` (``CorrelationMessageDto``) for message start events.

Only start events are emulated: no emulated instance waits for a message,
so a correlation restricted to executions (``processInstanceId``,
``correlationKeys``, ``localCorrelationKeys``) finds nothing. Wording as the
engine's (``MismatchingMessageCorrelationException`` wrapped in a 400
``RestException``); assumption: the single-definition rule (``all`` false and
more than one definition with that message) is worded the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.local.sandbox.camunda7_variables import bind_dto
from worker.local.sandbox.web import JsonDict, Reject

_FIELDS = {"messageName": str, "businessKey": str, "tenantId": str, "withoutTenantId": bool,
           "processInstanceId": str, "correlationKeys": dict, "localCorrelationKeys": dict,
           "processVariables": dict, "processVariablesLocal": dict, "all": bool,
           "resultEnabled": bool, "variablesInResultEnabled": bool}
_EXECUTIONS_ONLY = ("processInstanceId", "correlationKeys", "localCorrelationKeys")


@dataclass(frozen=True)
class Correlation:
    """A validated message correlation request."""

    name: str
    business_key: str | None
    tenant_id: str | None
    without_tenant: bool
    executions_only: bool
    variables: JsonDict
    all: bool
    result_enabled: bool
    variables_in_result: bool

    def admits(self, tenant_id: str | None) -> bool:
        """Whether a definition of ``tenant_id`` may receive the message."""
        if self.tenant_id is not None:
            return tenant_id == self.tenant_id
        return tenant_id is None if self.without_tenant else True

    def mismatch(self) -> Reject:
        return Reject(400, f"Cannot correlate message '{self.name}': No process definition or "
                           "execution matches the parameters", type="RestException")


def parse_correlation(body: Any, dto_package: str) -> Correlation:
    """Validate like the engine's JSON binding and ``MessageRestServiceImpl`` do."""
    bind_dto(body, _FIELDS, f"{dto_package}.message.CorrelationMessageDto",
             "Cannot deserialize the request body into CorrelationMessageDto")
    if not body.get("messageName"):
        raise Reject(400, "No message name supplied", type="InvalidRequestException")
    if body.get("tenantId") is not None and body.get("withoutTenantId"):
        raise Reject(400, "Parameter 'tenantId' cannot be used together with parameter "
                          "'withoutTenantId'.", type="InvalidRequestException")
    if body.get("processVariablesLocal"):
        raise Reject(400, "The sandbox does not emulate processVariablesLocal")
    return Correlation(
        name=body["messageName"], business_key=body.get("businessKey"),
        tenant_id=body.get("tenantId"), without_tenant=bool(body.get("withoutTenantId")),
        executions_only=any(body.get(name) for name in _EXECUTIONS_ONLY),
        variables=body.get("processVariables") or {}, all=bool(body.get("all")),
        result_enabled=bool(body.get("resultEnabled")),
        variables_in_result=bool(body.get("variablesInResultEnabled")))


def correlation_result(instance: JsonDict, variables: JsonDict | None) -> JsonDict:
    """One ``MessageCorrelationResultWithVariableDto`` of a started instance."""
    result: JsonDict = {"resultType": "ProcessDefinition", "execution": None,
                        "processInstance": instance}
    if variables is not None:
        result["variables"] = variables
    return result
