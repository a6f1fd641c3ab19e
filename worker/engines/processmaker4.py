"""ProcessMaker 4: ``POST /process_events/{process_id}?event={startEventNodeId}``.

The body is the request's data: the job's variables plus ``_startproc_key``,
so `lookup` can find the request with PMQL after an ambiguous outcome (PM4
has no business key and no request id of its own). ``job.business_key`` only
feeds the idempotency key; it is not sent.

PM4 is a Laravel app: without ``Accept: application/json`` an unauthenticated
call is redirected to the login page instead of answering 401, so every call
sends it. Errors keep Laravel's ``{message, errors}`` body; 422 is an invalid
job with the field errors in its message.

A 500 is ambiguous unless the body shows the one cause known to create
nothing, a node that is not a start event (see `ProcessMaker4.classify`).
Without ``options.event`` PM4 answers 404, as it does for an unknown event.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import requests
from pydantic import Field, StrictStr

from worker.engines._shared import (
    ACCEPT_JSON,
    numeric_process,
    reject_unsupported,
    reserve_key_variable,
)
from worker.engines.base import KEY_VARIABLE, Engine, Options, StartRequest
from worker.errors import AmbiguousError, InvalidJob, JobError, PermanentError
from worker.models import Job

# PHP's TypeError when the node handed to WorkflowManager::triggerStartEvent is not a
# start event (shown in the body when APP_DEBUG is on; production says "Server Error").
NOT_A_START_EVENT = re.compile(r"StartEventInterface|not a start ?event", re.IGNORECASE)


class ProcessMaker4Options(Options):
    event: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = None


def pmql_string(value: str) -> str:
    """A PMQL string literal: backslash and double quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def laravel_errors(body: Any) -> str:
    """``field: its errors; …`` from a Laravel validation body."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, dict):
        return ""
    parts = []
    for field, messages in errors.items():
        text = messages if isinstance(messages, str) else "; ".join(map(str, messages or []))
        parts.append(f"{field}: {text}")
    return "; ".join(parts)[:1000]


class ProcessMaker4(Engine):
    name = "processmaker4"
    options_model = ProcessMaker4Options
    supports_lookup = True

    def build_request(self, job: Job, key: str) -> StartRequest:
        opts = self.options(job, ProcessMaker4Options)
        reject_unsupported(job, "ProcessMaker 4", "version", "tenant_id")
        process = numeric_process(job, "ProcessMaker 4")
        reserve_key_variable(job.variables)
        body = {**job.variables, KEY_VARIABLE: key}
        params = {"event": opts.event} if opts.event else {}
        path = f"/process_events/{process}"
        return StartRequest("POST", path, json=body, params=params, headers=dict(ACCEPT_JSON))

    def classify(self, response: requests.Response, body: Any) -> JobError | None:
        error = super().classify(response, body)
        if error is None:
            return None
        status = response.status_code
        if status == 422:
            return InvalidJob(error.message, http_status=422, engine_error=body)
        if status == 404 and getattr(response.request, "method", None) == "POST":
            return PermanentError(
                f"{error.message} (unknown process, or options.event missing or not one of its "
                "nodes)",
                http_status=404,
                engine_error=body,
            )
        if status == 500 and _not_a_start_event(body):
            # The controller hands the node to WorkflowManager::triggerStartEvent, whose
            # StartEventInterface parameter type rejects any other node *before* the request
            # row is created: nothing exists, and the same event id fails every time.
            return PermanentError(
                f"{self.name} answered 500: options.event is not a start event",
                http_status=500,
                engine_error=body,
            )
        if status == 500:
            # Without that evidence a 500 stays ambiguous: WorkflowManagerRabbitMq creates the
            # request row first and dispatches afterwards, so a failure there leaves a request
            # behind. PMQL lookup reconciles it cheaply. Production bodies say only "Server
            # Error", so a misconfigured event ends as exhausted retries, hence the hint.
            return AmbiguousError(
                f"{error.message}; if it repeats, check that options.event is a start event",
                http_status=500,
                engine_error=body,
            )
        return error

    def summarize(self, body: Any) -> str | None:
        summary = super().summarize(body)
        details = laravel_errors(body)
        if details:
            return f"{summary} ({details})" if summary else details
        return summary

    def probe_request(self) -> StartRequest:
        return StartRequest("GET", "/requests", params={"per_page": "1"})

    def instance_id(self, body: Any) -> str:
        value = body["id"]
        if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
            raise TypeError("id is not a request id")
        return str(value)

    def lookup(self, job: Job, key: str) -> str | None:
        """The request whose data carries ``key`` (PMQL over ``data``, any status)."""
        params = {
            "type": "all",
            "include": "data",
            "pmql": f"data.{KEY_VARIABLE} = {pmql_string(key)}",
        }
        body = self.fetch(StartRequest("GET", "/requests", params=params, headers=dict(ACCEPT_JSON))
        )
        items = body.get("data") if isinstance(body, dict) else None
        if not items:
            return None
        return self.instance_id(items[0])


def _not_a_start_event(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    text = " ".join(str(body.get(name, "")) for name in ("message", "exception"))
    return NOT_A_START_EVENT.search(text) is not None
