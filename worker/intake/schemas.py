"""Response models of the intake, and the request-body schemas its OpenAPI document shows.

Request bodies are *not* parsed by FastAPI: the routes read the bytes and
validate each job with `Job.parse`, the very code a worker runs, so the
intake can neither accept a job the worker would refuse nor word its errors
differently. The schemas here only describe those bodies for clients and for
schemathesis; `job_schema` is derived from the `Job` model so the two cannot
drift apart.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from worker.models import Job

MAX_JOBS_PER_REQUEST = 1000
REF = "#/components/schemas/{model}"


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobsAccepted(_Out):
    """The jobs were validated and published; one id per job, in request order."""

    job_ids: list[str] = Field(min_length=1)


class JobPending(_Out):
    """No result yet: the job is queued or running (an unknown id is 404)."""

    job_id: str
    status: Literal["pending"] = "pending"


class KeyPending(_Out):
    """No result for this idempotency key yet (or the key was never sent)."""

    idempotency_key: str
    target: str | None = None
    status: Literal["pending"] = "pending"


class BatchAccepted(_Out):
    """A batch file was validated and its valid rows published (see `worker.batch`)."""

    batch_id: str
    target: str
    process: str
    format: str
    rows: int
    valid: int
    invalid: int
    enqueued: int
    already_done: int = Field(description="Rows of an earlier run of this batch id with a result.")


class BatchStatusOut(_Out):
    """Counters of a batch id over all its runs; ``pending`` needs the expected row count."""

    batch_id: str
    created: int
    duplicate: int
    failed: int
    done: int
    expected: int | None = None
    pending: int | None = None
    meta: dict[str, str] = Field(default_factory=dict)


class HealthCheck(_Out):
    ok: bool
    error: str | None = None


class Health(_Out):
    status: Literal["ok"]
    checks: dict[str, HealthCheck]


def job_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The `Job` schema and the definitions it refers to, for ``components.schemas``.

    ``process`` gets the bounds its validator enforces (1-256 printable
    characters), which pydantic cannot see in a ``field_validator``; a numeric
    process id is documented as an int64. Exactly one of ``process`` and
    ``message`` is required (the validator of ``message``): a ``oneOf`` says so.
    """
    schema = Job.model_json_schema(ref_template=REF)
    defs = schema.pop("$defs", {})
    text, number, _null = schema["properties"]["process"]["anyOf"]
    text.update({"minLength": 1, "maxLength": 256, "pattern": r"^[^\x00-\x1f\x7f]+$"})
    number.update({"minimum": -(2**63), "maximum": 2**63 - 1})
    schema["properties"]["message"]["description"] = (
        "Instead of process: start the process whose message start event has this name "
        "(Camunda 8 and 7); version must then be null or absent."
    )
    null = {"type": "null"}
    given = {"not": null}
    schema["oneOf"] = [
        {"required": ["process"], "properties": {"process": given, "message": null}},
        {"required": ["message"],
         "properties": {"message": given, "process": null, "version": null}},
    ]
    return schema, defs


def jobs_request_schema() -> dict[str, Any]:
    """One job object, or a non-empty list of them."""
    job = {"$ref": REF.format(model="Job")}
    return {
        "oneOf": [
            job,
            {"type": "array", "items": job, "minItems": 1, "maxItems": MAX_JOBS_PER_REQUEST},
        ]
    }
