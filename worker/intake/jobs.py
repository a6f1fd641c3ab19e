"""``/jobs``: enqueue start jobs over HTTP and read their results.

``POST /jobs`` validates every job of the request with `Job.parse` before it
publishes any (a list with one bad job publishes none: the client fixes the
list and sends it again, with no half of it already started), then publishes
them all on one broker connection, exactly as `worker.enqueue_many` does.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from kombu.exceptions import KombuError
from redis import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from worker.errors import ConfigError, InvalidJob, StartprocError
from worker.intake.context import Intake, intake_of
from worker.intake.docs import problems
from worker.intake.problems import FieldError, ProblemError, job_field_errors
from worker.intake.schemas import (
    MAX_JOBS_PER_REQUEST,
    JobPending,
    JobsAccepted,
    KeyPending,
    jobs_request_schema,
)
from worker.models import TARGET_NAME, Result
from worker.producer import prepare
from worker.targets import Targets

router = APIRouter(tags=["jobs"])

JOB_ID = r"^[A-Za-z0-9._:-]{1,128}$"
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
JSON_TYPES = ("application/json",)
RETRY_AFTER = "5"
INTEGER_FIELDS = ("version", "process")


def unavailable(what: str, exc: Exception) -> ProblemError:
    """503 for a broker or Redis that did not answer (or is not configured): retry later."""
    reason = str(exc) if isinstance(exc, StartprocError) else f"unreachable ({type(exc).__name__})"
    return ProblemError(
        503,
        "unavailable",
        "Service Unavailable",
        f"{what}: {reason}; retry later",
        headers={"Retry-After": RETRY_AFTER},
    )


async def read_json(request: Request) -> Any:
    """The body as JSON: 415 for another media type, 400 for bytes that are not JSON."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media not in JSON_TYPES and not media.endswith("+json"):
        raise ProblemError(
            415,
            "unsupported-media-type",
            "Unsupported Media Type",
            f"send the jobs as application/json, not {media}",
        )
    body = await request.body()
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise ProblemError(400, "malformed-json", "Malformed JSON", "body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ProblemError(
            400,
            "malformed-json",
            "Malformed JSON",
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except RecursionError:
        raise ProblemError(
            400, "malformed-json", "Malformed JSON", "body is nested too deeply"
        ) from None


def prepare_all(raw: Any, targets: Targets | None = None) -> list[dict[str, Any]]:
    """Validate every job (all errors at once, by index); 422 if any is invalid.

    With ``targets``, a job naming a target the file does not declare is invalid
    too (field ``target``, with a suggestion): the worker would only fail it.
    """
    if isinstance(raw, dict):
        items: list[Any] = [raw]
    elif isinstance(raw, list) and 1 <= len(raw) <= MAX_JOBS_PER_REQUEST:
        items = raw
    else:
        reason = (
            f"a list of 1 to {MAX_JOBS_PER_REQUEST} jobs"
            if isinstance(raw, list)
            else f"a job object or a list of jobs, not {_json_type(raw)}"
        )
        raise ProblemError(
            422,
            "invalid-job",
            "Invalid job",
            f"expected {reason}",
            errors=[FieldError(field="", message=f"expected {reason}")],
        )
    prepared, errors = [], []
    for index, item in enumerate(items):
        try:
            job = prepare(_integral_numbers(item))
        except InvalidJob as exc:
            errors.extend(job_field_errors(index, exc.message))
        except RecursionError:
            errors.append(FieldError(index=index, field="", message="nested too deeply"))
        else:
            unknown = targets.unknown(job["target"], listing=False) if targets else None
            if unknown:
                errors.append(FieldError(index=index, field="target", message=unknown))
            prepared.append(job)
    if errors:
        bad = len({e.index for e in errors})
        raise ProblemError(
            422,
            "invalid-job",
            "Invalid job",
            f"{bad} of {len(items)} jobs are invalid; none was enqueued",
            errors=errors,
        )
    return prepared


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number" if isinstance(value, int | float) else "a string"


def _integral_numbers(item: Any) -> Any:
    """``3.0`` -> ``3`` in the integer fields: in JSON (and JSON Schema) they are the same number.

    Many JSON encoders write integral floats as ``3.0``; the worker's model is
    strict about Python types, so the intake, which parses the JSON itself,
    gives it the integer the client meant.
    """
    if not isinstance(item, dict):
        return item
    fixed = dict(item)
    for name in INTEGER_FIELDS:
        value = fixed.get(name)
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            fixed[name] = int(value)
    message = fixed.get("message")
    if isinstance(message, dict):
        fixed["message"] = _integral_numbers_of(message, ("ttl",))
    return fixed


def _integral_numbers_of(item: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    fixed = dict(item)
    for name in names:
        value = fixed.get(name)
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            fixed[name] = int(value)
    return fixed


@router.post(
    "/jobs",
    status_code=202,
    summary="Enqueue one start job or a list of them",
    response_model=JobsAccepted,
    responses={
        202: {
            "headers": {
                "Location": {
                    "schema": {"type": "string"},
                    "description": "/jobs/{id} of the first job",
                }
            }
        },
        **problems(400, 401, 403, 413, 415, 422, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": jobs_request_schema()}},
        }
    },
)
async def post_jobs(request: Request) -> JSONResponse:
    """Validate every job, then publish them all; 202 with their ids in request order."""
    intake = intake_of(request)
    prepared = prepare_all(await read_json(request), _targets(intake))
    try:
        ids = await run_in_threadpool(intake.publish, prepared)
    except (KombuError, RedisError, OSError, ConfigError) as exc:
        raise unavailable("the broker", exc) from exc
    return JSONResponse(
        JobsAccepted(job_ids=ids).model_dump(),
        status_code=202,
        headers={"Location": f"/jobs/{quote(ids[0], safe=':')}"},
    )


def _targets(intake: Intake) -> Targets:
    try:
        return intake.targets()
    except ConfigError as exc:
        raise ProblemError(
            503,
            "unavailable",
            "Service Unavailable",
            "the intake cannot read its targets file; its log and `startproc targets check` "
            "say why",
            headers={"Retry-After": RETRY_AFTER},
        ) from exc


def _result_or(pending: JobPending | KeyPending, result: Result | None) -> JSONResponse:
    if result is None:
        return JSONResponse(pending.model_dump(), status_code=202)
    return JSONResponse(result.model_dump(mode="json"), status_code=200)


RESULT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Result, "description": "The job's result"},
    **problems(401, 422, 503),
}


@router.get(
    "/jobs/{job_id}",
    summary="A job's result, or pending",
    response_model=None,
    responses={
        **RESULT_RESPONSES,
        202: {"model": JobPending, "description": "No result yet"},
        **problems(404),
    },
)
async def get_job(request: Request, job_id: Annotated[str, Path(pattern=JOB_ID)]) -> JSONResponse:
    """200 with the result once the job is decided; 202 ``pending`` until then; 404 unknown.

    Unknown: the id was never enqueued through startproc's producers (the
    intake, the CLI, the Python API, batches, schedules), has no result and
    is not in flight -- or its result expired after ``STARTPROC_RETENTION_DAYS``.
    """
    intake = intake_of(request)
    try:
        result, known = await run_in_threadpool(lambda: intake.store.lookup(job_id))
    except (RedisError, ConfigError) as exc:
        raise unavailable("Redis", exc) from exc
    if not known:
        raise ProblemError(
            404,
            "not-found",
            "Not Found",
            f"no job {job_id!r}: never enqueued through startproc, or its result expired",
        )
    return _result_or(JobPending(job_id=job_id), result)


@router.get(
    "/jobs",
    summary="A result by idempotency key, or pending",
    response_model=None,
    responses={**RESULT_RESPONSES, 202: {"model": KeyPending, "description": "No result yet"}},
)
async def find_job(
    request: Request,
    idempotency_key: Annotated[str, Query(min_length=1, max_length=512, pattern=PRINTABLE)],
    target: Annotated[str | None, Query(pattern=TARGET_NAME)] = None,
) -> JSONResponse:
    """The result of the job that used ``idempotency_key`` (derived keys count too).

    Give ``target`` when you know it: the lookup is then one exact read.
    Without it the index is searched for the key under any target.
    """
    intake = intake_of(request)
    try:
        result = await run_in_threadpool(lambda: intake.store.get_by_key(idempotency_key, target))
    except (RedisError, ConfigError) as exc:
        raise unavailable("Redis", exc) from exc
    return _result_or(KeyPending(idempotency_key=idempotency_key, target=target), result)

