"""IBM Blueworks Live: ``POST /scr/api/LaunchInstance?version=20110917``.

The instance definition travels as one form field, ``instance``, holding the
JSON ``{"app": {...}}`` (seed 003 sends it with ``--data-urlencode``).
``app.id`` is ``job.process``; ``app.subject`` is required, so it comes from
``options.subject`` (a template over the job's variables) or the business
key. ``app.attachments`` is always sent, ``[]`` when none, because Blueworks
requires the array; ``app.tasks`` is sent only when given, so the app's own
task list applies otherwise.

LaunchInstance has no data fields: ``job.variables`` only fill the subject
template. Service ID credentials need ``X-On-Behalf-Of``: the job's
``options.on_behalf_of``, else the target's ``on_behalf_of``.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictStr

from worker.engines._shared import ACCEPT_JSON, is_number, reject_unsupported
from worker.engines.base import Engine, Options, StartRequest
from worker.errors import InvalidJob
from worker.models import Job
from worker.validation import did_you_mean

PATH = "/scr/api/LaunchInstance"
API_VERSION = "20110917"
LARGE_NUMBER = re.compile(r"[0-9]{4,}")  # a width like {x:99999999} would build a huge string
NonEmpty = Annotated[StrictStr, Field(min_length=1)]
DueDate = Annotated[StrictStr, Field(pattern=r"^[0-9]{4}/[0-9]{2}/[0-9]{2}$")]  # yyyy/mm/dd
HEADER_VALUE = r"^[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
"""Sent as ``X-On-Behalf-Of``: no control characters (CR/LF would split the header)."""
HeaderValue = Annotated[StrictStr, Field(min_length=1, pattern=HEADER_VALUE)]


class Task(Options):
    """Blueworks' own task shape: ``id`` for a task of the app, none for a new one."""

    id: NonEmpty | None = None
    name: NonEmpty
    assignedTo: NonEmpty
    approvalStep: StrictBool | None = None
    dueDateExpression: DueDate | None = None


class Attachment(Options):
    id: NonEmpty


class BlueworksOptions(Options):
    subject: NonEmpty | None = None
    details: StrictStr | None = None
    tasks: list[Task] = Field(default_factory=list)
    attachments: list[Attachment] = Field(default_factory=list)
    mail_on_completion: StrictBool | None = None
    time_zone_id: NonEmpty | None = None
    on_behalf_of: HeaderValue | None = None


class _Variables(Mapping[str, Any]):
    """The values a subject template may use: numbers stay numbers (``{amount:.2f}``)."""

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self._variables = variables

    def __getitem__(self, name: str) -> Any:
        if name not in self._variables:
            hint = did_you_mean(name, self._variables)
            raise InvalidJob(f"options.subject: {{{name}}} is not a variable of the job{hint}")
        value = self._variables[name]
        return value if isinstance(value, str) or is_number(value) else json.dumps(value)

    def __iter__(self) -> Any:
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)


def render_subject(template: str, variables: Mapping[str, Any]) -> str:
    """Fill ``{name}`` placeholders; attribute, index and positional fields are refused."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidJob(f"options.subject: {exc}") from None
    for _literal, field, spec, _conversion in fields:
        if field is None:
            continue
        if not field.isidentifier():
            raise InvalidJob(
                f"options.subject: {{{field}}} is not allowed; use {{name}} of a variable"
            )
        if spec and ("{" in spec or LARGE_NUMBER.search(spec)):
            raise InvalidJob(f"options.subject: format {{{field}:{spec}}} is not allowed")
    try:
        subject = template.format_map(_Variables(variables))
    except (ValueError, TypeError) as exc:
        raise InvalidJob(f"options.subject: {exc}") from None
    if not subject.strip():
        raise InvalidJob("options.subject: renders to an empty subject")
    return subject


class Blueworks(Engine):
    """Blueworks has no search by business data, so an ambiguous start cannot be reconciled."""

    name = "blueworks"
    options_model = BlueworksOptions
    supports_lookup = False

    def build_request(self, job: Job, key: str) -> StartRequest:
        opts = self.options(job, BlueworksOptions)
        reject_unsupported(job, "Blueworks Live", "version", "tenant_id")
        app: dict[str, Any] = {"id": job.process_id, "subject": self._subject(job, opts)}
        if opts.details is not None:
            app["details"] = opts.details
        if opts.mail_on_completion is not None:
            app["mailOnCompletion"] = opts.mail_on_completion
        if opts.tasks:
            app["tasks"] = [task.model_dump(exclude_none=True) for task in opts.tasks]
        app["attachments"] = [attachment.model_dump() for attachment in opts.attachments]
        if opts.time_zone_id:
            app["timeZoneId"] = opts.time_zone_id
        headers = dict(ACCEPT_JSON)
        on_behalf_of = opts.on_behalf_of or getattr(self.target, "on_behalf_of", None)
        if on_behalf_of:
            headers["X-On-Behalf-Of"] = on_behalf_of
        return StartRequest(
            "POST",
            PATH,
            form={"instance": json.dumps({"app": app}, ensure_ascii=False, separators=(",", ":"))},
            params={"version": API_VERSION},
            headers=headers,
        )

    @staticmethod
    def _subject(job: Job, opts: BlueworksOptions) -> str:
        if opts.subject is not None:
            return render_subject(opts.subject, job.variables)
        if job.business_key:
            return job.business_key
        raise InvalidJob("options.subject: required by Blueworks (or set business_key)")

    def instance_id(self, body: Any) -> str:
        value = body["work"]["id"]
        if not isinstance(value, str) or not value:
            raise TypeError("work.id is not an instance id")
        return value
