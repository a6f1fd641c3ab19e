"""Syca TAS: ``POST /api/plugins/api-extensions/start-process`` (apiExtensions plugin).

Seed 000 is the only documentation: Bearer auth, ``{"processId": <number>,
"data": {...}}`` where each value is a string, a number or a ``YYYY-MM-DD``
date, and every field must exist on the template. The call is atomic (an
error creates nothing), so every value is checked *before* sending: booleans,
nulls, objects and arrays are refused rather than guessed at. Variables named
in ``options.date_fields`` may be ISO date-times and are cut to their date as
written (no time-zone shift). ``_isCaseCreatedByAPI: "true"`` is added when the
target or the job asks for it (the seed's recommendation).

Assumption, since neither the success nor the error body is documented:
the instance id is the first of ``id``, ``iprocId``, ``caseId``,
``processInstanceId``, ``instanceId`` found at the top level of the body or
under ``data`` / ``result``. A 2xx without any of them is still a success
(the engine said yes; failing it would invite a second case) and reports the
instance id ``"?"``; the raw body stays in ``Started.body`` for whoever needs
more. 4xx are permanent (nothing was created), 5xx ambiguous by the default
mapping. There is no lookup: nothing can find a case by the worker's key.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictStr

from worker.engines._shared import (
    check_known,
    is_number,
    numeric_process,
    parse_iso_datetime,
    reject_unsupported,
)
from worker.engines.base import Engine, Options, StartRequest
from worker.errors import InvalidJob
from worker.models import Job

PATH = "/api/plugins/api-extensions/start-process"
CREATED_BY_API = "_isCaseCreatedByAPI"
ID_FIELDS = ("id", "iprocId", "caseId", "processInstanceId", "instanceId")
ID_CONTAINERS = ("data", "result")
UNKNOWN_ID = "?"


class TasOptions(Options):
    mark_created_by_api: StrictBool = False
    date_fields: list[Annotated[StrictStr, Field(min_length=1)]] = Field(default_factory=list)


def tas_value(value: Any, is_date: bool, where: str) -> str | int | float:
    """A value TAS documents: string, number, or (for date fields) ``YYYY-MM-DD``."""
    if is_date:
        return parse_iso_datetime(value, where).date().isoformat()
    if isinstance(value, str) or is_number(value):
        return value
    if isinstance(value, bool):
        raise InvalidJob(
            f"{where}: TAS takes strings, numbers and dates, not booleans "
            '(send "true"/"false" as a string if the template field is text)'
        )
    kind = "null" if value is None else "an array" if isinstance(value, list) else "an object"
    raise InvalidJob(f"{where}: TAS takes strings, numbers and dates, not {kind}")


def find_id(body: Any) -> str | None:
    """The first id-like field of the body or of its ``data``/``result`` object."""
    if not isinstance(body, dict):
        return None
    places = [body, *(body.get(name) for name in ID_CONTAINERS)]
    for place in places:
        if not isinstance(place, dict):
            continue
        for name in ID_FIELDS:
            value = place.get(name)
            if (isinstance(value, str) and value) or is_number(value):
                return str(value)
    return None


class Tas(Engine):
    name = "tas"
    options_model = TasOptions
    supports_lookup = False

    def build_request(self, job: Job, key: str) -> StartRequest:
        opts = self.options(job, TasOptions)
        reject_unsupported(job, "TAS", "version", "tenant_id")
        process = numeric_process(job, "TAS")
        check_known(opts.date_fields, job.variables, "options.date_fields")
        dates = set(opts.date_fields)
        data: dict[str, Any] = {
            name: tas_value(value, name in dates, f"variables.{name}")
            for name, value in job.variables.items()
        }
        if opts.mark_created_by_api or getattr(self.target, "mark_created_by_api", False):
            data[CREATED_BY_API] = "true"
        return StartRequest("POST", PATH, json={"processId": process, "data": data})

    def instance_id(self, body: Any) -> str:
        """Never fails a 2xx: see the module docstring for the ``"?"`` assumption."""
        return find_id(body) or UNKNOWN_ID
