"""Camunda 8 Orchestration Cluster REST API: ``POST /v2/process-instances``.

The request shape depends on the target's ``api_version`` (ENGINE-NOTES):

* ``8.8`` (default) and ``8.9``: ``processDefinitionId``/``processDefinitionVersion``
  or a *string* ``processDefinitionKey``; ``tags``; unknown fields are a 400
  (``additionalProperties: false``), so ``businessId`` is sent on 8.9 only.
* ``8.6``: the same names, int64 keys as JSON numbers, no tags; backpressure is 429.
* ``8.6-alpha``: the pre-release shape of seed 001, ``bpmnProcessId``/``version``.

The idempotency key travels as a tag ``startproc:<hash>`` (8.8+) or as the
variable ``_startproc_key`` (8.6), so `lookup` can find an instance after an
ambiguous outcome. ``operationReference`` is derived from the key too, but it
neither deduplicates nor is searchable: it only ties the engine's records to
the job.

On 8.9 every start carries a ``businessId``: ``options.business_id``, else the
business key, else the idempotency key itself (its tag when longer than the
256 characters allowed). With the cluster's business id uniqueness control on,
the engine refuses a second active root instance with that id (409); whose
instance holds it is found in `worker.engines.business_ids`
(``options.on_duplicate`` says what another app's instance makes the job).

``options.version_tag`` (8.8+) pins the definition: its key is looked up
(`worker.engines.version_tags`, cached) right before the send, and the
instance is started by that key. A job with ``message`` instead of
``process`` correlates the message (`worker.engines.messages`):
``POST /v2/messages/correlation``, whose ``processInstanceKey`` is the
instance; the key travels as the variable ``_startproc_key`` there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import requests
from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator

from worker.engines.base import KEY_VARIABLE, Engine, Options, Started, StartRequest
from worker.engines.business_ids import instance_key, resolve_clash
from worker.engines.messages import refuse_options, start_message, variables_with_key
from worker.engines.version_tags import DefinitionKeys
from worker.errors import AmbiguousError, Backpressure, InvalidJob, JobError, PermanentError
from worker.keys import int64_reference, short_hash
from worker.models import Job

TAG = re.compile(r"^[A-Za-z][A-Za-z0-9_\-:.]{0,99}$")
# The spec's patterns (8.8; 8.9 widens process ids to Unicode letters and digits).
PROCESS_ID = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_\-.]*$")
PROCESS_ID_89 = re.compile(r"^[^\W\d][\w\-.]*$")
TENANT_ID = re.compile(r"^(<default>|[A-Za-z0-9_@.+-]{1,256})$")
LONG_KEY = r"^-?[0-9]{1,24}$"
MAX_TAGS = 10
MAX_BUSINESS_ID = 256
PATH = "/v2/process-instances"
MESSAGE_PATH = "/v2/messages/correlation"


def key_tag(key: str) -> str:
    """The tag that marks an instance as started for ``key`` (fits the tag pattern)."""
    return f"startproc:{short_hash(key)}"


class Camunda8Options(Options):
    process_definition_key: (
        Annotated[StrictStr, Field(pattern=LONG_KEY)] | StrictInt | None
    ) = None
    tags: list[Annotated[StrictStr, Field(pattern=TAG.pattern)]] = Field(
        default_factory=list, max_length=MAX_TAGS - 1
    )
    business_id: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    on_duplicate: Literal["reject", "return_existing"] | None = None
    version_tag: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    start_instructions: list[StrictStr | dict[str, StrictStr]] = Field(default_factory=list)
    await_completion: StrictBool = False
    fetch_variables: list[StrictStr] = Field(default_factory=list)
    request_timeout: Annotated[StrictInt, Field(ge=0)] | None = None

    @field_validator("tags")
    @classmethod
    def _unique(cls, tags: list[str]) -> list[str]:
        if len(set(tags)) != len(tags):
            raise ValueError("tags must be unique")
        return tags

    def element_ids(self) -> list[dict[str, str]]:
        out = []
        for item in self.start_instructions:
            element = (
                item if isinstance(item, str) else item.get("elementId") or item.get("element_id")
            )
            if not element:
                raise InvalidJob("options.start_instructions: each item needs an elementId")
            out.append({"elementId": element})
        return out


class Camunda8(Engine):
    name = "camunda8"
    options_model = Camunda8Options
    supports_lookup = True
    supports_messages = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.definition_keys = DefinitionKeys(self.fetch)

    @property
    def version(self) -> str:
        return str(getattr(self.target, "api_version", "8.8"))

    @property
    def uses_tags(self) -> bool:
        return self.version in ("8.8", "8.9")

    def build_request(self, job: Job, key: str) -> StartRequest:
        opts = self.options(job, Camunda8Options)
        self._check_identifiers(job, opts)
        body: dict[str, Any] = self._definition(job, opts)
        variables = dict(job.variables)
        if KEY_VARIABLE in variables:
            raise InvalidJob(f"variables.{KEY_VARIABLE}: reserved for the idempotency key")
        if not self.uses_tags:
            variables[KEY_VARIABLE] = key
        body["variables"] = variables
        if job.tenant_id:
            body["tenantId"] = job.tenant_id
        if self.version != "8.6-alpha":
            body["operationReference"] = int64_reference(key)
        if opts.start_instructions:
            body["startInstructions"] = opts.element_ids()
        if opts.await_completion:
            body["awaitCompletion"] = True
            if opts.fetch_variables:
                body["fetchVariables"] = opts.fetch_variables
        elif opts.fetch_variables:
            raise InvalidJob("options.fetch_variables: only meaningful with await_completion")
        if opts.request_timeout is not None:
            body["requestTimeout"] = opts.request_timeout
        self._tags(body, opts, key)
        self._business_id(body, job, opts, key)
        context: dict[str, str] = {"on_duplicate": opts.on_duplicate or "reject"}
        if opts.version_tag is not None:
            context["version_tag"] = opts.version_tag
        return StartRequest("POST", PATH, json=body, context=context,
                            deferred=opts.version_tag is not None)

    def build_message_request(self, job: Job, key: str) -> StartRequest:
        """``POST /v2/messages/correlation``: name, correlation key, variables, tenant."""
        message = start_message(job, self.name)
        refuse_options(job, self.name)
        if job.tenant_id is not None and not TENANT_ID.match(job.tenant_id):
            raise InvalidJob(f"tenant_id: {job.tenant_id!r} does not match {TENANT_ID.pattern}")
        body: dict[str, Any] = {"name": message.name}
        if message.correlation_key is not None:
            body["correlationKey"] = message.correlation_key
        body["variables"] = variables_with_key(job, key)
        if job.tenant_id:
            body["tenantId"] = job.tenant_id
        return StartRequest("POST", MESSAGE_PATH, json=body)

    def resolve(self, request: StartRequest) -> StartRequest:
        """A version-tag start: by the definition key the tag names (looked up, cached)."""
        body = dict(request.json)
        process_id = body.pop("processDefinitionId")
        key = self.definition_keys.key(
            process_id, request.context["version_tag"], body.get("tenantId")
        )
        context = {**request.context, "process_id": process_id}
        return StartRequest(request.method, request.path, json={"processDefinitionKey": key,
                            **body}, context=context)

    def _check_identifiers(self, job: Job, opts: Camunda8Options) -> None:
        """Refuse before sending what the engine's schema would refuse with a 400."""
        if opts.version_tag is not None:
            if self.version not in ("8.8", "8.9"):
                raise InvalidJob(
                    f"options.version_tag: needs api_version 8.8 or later (target has "
                    f"{self.version}): older versions cannot search definitions by tag"
                )
            for name, value in (("version", job.version),
                                ("options.process_definition_key", opts.process_definition_key)):
                if value is not None:
                    raise InvalidJob(f"{name}: a job pins its definition by version_tag or by "
                                     f"{name.removeprefix('options.')}, not both")
        pattern = PROCESS_ID_89 if self.version == "8.9" else PROCESS_ID
        if opts.process_definition_key is None and not pattern.match(job.process_id):
            raise InvalidJob(
                f"process: {job.process_id!r} is not a BPMN process id ({pattern.pattern})"
            )
        if job.tenant_id is not None and not TENANT_ID.match(job.tenant_id):
            raise InvalidJob(f"tenant_id: {job.tenant_id!r} does not match {TENANT_ID.pattern}")

    def _definition(self, job: Job, opts: Camunda8Options) -> dict[str, Any]:
        if opts.process_definition_key is not None:
            key = str(opts.process_definition_key)
            return {"processDefinitionKey": key if self.uses_tags else int(key)}
        if self.version == "8.6-alpha":
            body: dict[str, Any] = {"bpmnProcessId": job.process_id}
            if job.version is not None:
                body["version"] = job.version
            return body
        body = {"processDefinitionId": job.process_id}
        if job.version is not None:
            body["processDefinitionVersion"] = job.version
        return body

    def _tags(self, body: dict[str, Any], opts: Camunda8Options, key: str) -> None:
        if self.uses_tags:
            body["tags"] = [*opts.tags, key_tag(key)]
        elif opts.tags:
            raise InvalidJob(
                f"options.tags: needs api_version 8.8 or later (target has {self.version})"
            )

    def _business_id(
        self, body: dict[str, Any], job: Job, opts: Camunda8Options, key: str
    ) -> None:
        """On 8.9 always one, so the engine's uniqueness control covers every start."""
        if self.version == "8.9":
            fallback = key if len(key) <= MAX_BUSINESS_ID else key_tag(key)
            body["businessId"] = opts.business_id or job.business_key or fallback
            return
        for name in ("business_id", "on_duplicate"):
            if getattr(opts, name) is not None:
                raise InvalidJob(
                    f"options.{name}: needs api_version 8.9 (business ids; target has "
                    f"{self.version})"
                )

    def classify(self, response: requests.Response, body: Any) -> JobError | None:
        if response.status_code == 500 and _exhausted(body):
            return Backpressure(
                f"camunda8 answered 500: {self.summarize(body)} (backpressure)",
                http_status=500,
                engine_error=body,
            )
        return super().classify(response, body)

    def summarize(self, body: Any) -> str | None:
        if isinstance(body, dict) and ("title" in body or "detail" in body):
            return ": ".join(str(body[k]) for k in ("title", "detail") if body.get(k))
        return super().summarize(body)

    def probe_request(self) -> StartRequest:
        return StartRequest("GET", "/v2/topology")

    def instance_id(self, body: Any) -> str:
        value = body["processInstanceKey"]
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise TypeError("processInstanceKey is not a key")
        return str(value)

    def lookup(self, job: Job, key: str) -> str | None:
        """Search by the key's tag (8.8+) or variable (8.6, starts by message). Eventually
        consistent."""
        if self.uses_tags and job.message is None:
            criteria: dict[str, Any] = {"tags": [key_tag(key)]}
        else:
            value = json.dumps(key)
            criteria = {"variables": [{"name": KEY_VARIABLE, "value": value}]}
        found = self._first(criteria)
        return instance_key(found) if found is not None else None

    def execute(
        self,
        request: StartRequest,
        prepared: requests.PreparedRequest | None = None,
        before_send: Callable[[], None] | None = None,
    ) -> Started:
        """`Engine.execute`; on 8.9 a 409 (business id in use) is resolved to whose it is."""
        if request.deferred:
            request, prepared = self.resolve(request), None
        try:
            return super().execute(request, prepared, before_send)
        except PermanentError as exc:
            body, context = request.json, request.context
            if exc.http_status == 404 and "version_tag" in context:  # the tagged key is gone
                self.definition_keys.forget(
                    context["process_id"], context["version_tag"], body.get("tenantId")
                )
            if exc.http_status != 409 or self.version != "8.9" or "businessId" not in body:
                raise
            return resolve_clash(self._first, body, exc, context.get("on_duplicate", "reject"))

    def _first(self, criteria: dict[str, Any]) -> dict[str, Any] | None:
        """The first instance a search with this filter finds, or None."""
        body = self.fetch(StartRequest("POST", f"{PATH}/search", json={"filter": criteria}))
        items = body.get("items", []) if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise AmbiguousError(
                "camunda8 search answered without a list of items", engine_error=body
            )
        return items[0] if items else None


def _exhausted(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    text = f"{body.get('title', '')} {body.get('detail', '')}"
    return "RESOURCE_EXHAUSTED" in text
