"""``/batches``: a CSV/JSONL file, or a JSON array of rows -> one start job per row.

The upload is written to a private temporary directory and handed to
`worker.batch.submit` with a `worker.batch.BatchOptions` built from the
query, the same code and options as ``startproc batch FILE``: the whole file
is validated first (any invalid row and no ``skip_invalid``: 422 and nothing
sent), keys and job ids are derived from the batch id and the rows, so
posting the same batch again starts nothing twice.

The batch id is the client's ``batch_id``, else -- as on the command line --
``{file name}:{target}:{process}`` for an upload with a file name. A body
without a file name (raw CSV/JSONL, a JSON array) needs ``batch_id``, like
``startproc batch -`` needs ``--batch-id``: a random id would make a
retried POST a second batch.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from kombu.exceptions import KombuError
from redis import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse

from worker import batch
from worker.batch.source import Format
from worker.errors import ConfigError
from worker.intake.context import intake_of
from worker.intake.docs import problems
from worker.intake.jobs import PRINTABLE, read_json, unavailable
from worker.intake.problems import FieldError, ProblemError
from worker.intake.schemas import BatchAccepted, BatchStatusOut
from worker.models import TARGET_NAME
from worker.targets import load_targets

router = APIRouter(tags=["batches"])

CHUNK = 1024 * 1024
CSV_TYPES = {"text/csv", "text/plain", "text/tab-separated-values"}
JSONL_TYPES = {"application/x-ndjson", "application/jsonl", "application/x-jsonlines"}
SUFFIXES = {".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".json"}
BATCH_ID = r"^[^\x00-\x1f\x7f]{1,200}$"

_FILE_SCHEMA = {"type": "string", "format": "binary"}
REQUEST_BODY = {
    "required": True,
    "description": "The rows: a multipart upload (field `file`), a raw CSV or JSONL body, "
    "or a JSON array of row objects.",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": _FILE_SCHEMA},
            }
        },
        "text/csv": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
        "application/json": {
            "schema": {"type": "array", "items": {"type": "object"}, "minItems": 1}
        },
    },
}


def invalid_batch(detail: str, **extra: Any) -> ProblemError:
    return ProblemError(422, "invalid-batch", "Invalid batch", detail, extra=extra or None)


async def _spool(request: Request, folder: FsPath) -> tuple[FsPath, str | None, Format | None]:
    """Write the rows to ``folder``; returns (path, upload file name, format implied by type)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await _spool_upload(request, folder)
    if media == "application/json":
        rows = await read_json(request)
        if not isinstance(rows, list) or not rows:
            raise invalid_batch("a JSON body must be a non-empty array of row objects")
        path = folder / "rows.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path, None, "jsonl"
    if media in CSV_TYPES or media in JSONL_TYPES:
        fmt: Format = "csv" if media in CSV_TYPES else "jsonl"
        path = folder / f"rows.{fmt}"
        with path.open("wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        return path, None, fmt
    raise ProblemError(
        415,
        "unsupported-media-type",
        "Unsupported Media Type",
        "send multipart/form-data (field 'file'), text/csv, application/x-ndjson "
        f"or a JSON array, not {media or 'no Content-Type'}",
    )


async def _spool_upload(request: Request, folder: FsPath) -> tuple[FsPath, str | None, None]:
    async with request.form(max_files=1, max_fields=16) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise invalid_batch("the multipart body needs a file field named 'file'")
        name = FsPath(upload.filename or "").name or None
        suffix = FsPath(name or "").suffix.lower()
        path = folder / f"upload{suffix if suffix in SUFFIXES else ''}"
        with path.open("wb") as out:
            while chunk := await upload.read(CHUNK):
                out.write(chunk)
    return path, name, None


def _row_errors(summary: batch.BatchSummary) -> list[FieldError]:
    return [FieldError(line=e.line, field=e.column, message=e.reason) for e in summary.errors]


@router.post(
    "/batches",
    summary="Start one instance per row of a CSV/JSONL file or JSON array",
    response_model=BatchAccepted,
    status_code=202,
    responses={
        200: {"model": BatchAccepted, "description": "dry_run: validated, nothing sent"},
        202: {
            "headers": {
                "Location": {"schema": {"type": "string"}, "description": "/batches/{batch_id}"}
            }
        },
        **problems(400, 401, 403, 413, 415, 422, 503),
    },
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def post_batch(
    request: Request,
    target: Annotated[str, Query(pattern=TARGET_NAME)],
    process: Annotated[str, Query(min_length=1, max_length=256, pattern=PRINTABLE)],
    business_key: Annotated[str | None, Query(min_length=1, description="Column")] = None,
    batch_id: Annotated[str | None, Query(pattern=BATCH_ID)] = None,
    map_: Annotated[
        list[str] | None,
        Query(alias="map", description="COLUMN[=VARIABLE][:TYPE]; repeat for each column"),
    ] = None,
    fmt: Annotated[Literal["csv", "jsonl"] | None, Query(alias="format")] = None,
    delimiter: Annotated[str | None, Query(min_length=1, max_length=3)] = None,
    encoding: Annotated[str | None, Query(min_length=1, max_length=40)] = None,
    skip_invalid: bool = False,
    dry_run: bool = False,
) -> JSONResponse:
    """Validate every row, then publish the valid ones (all rows must be valid by default)."""
    cfg = intake_of(request).settings
    try:
        targets = load_targets(cfg.targets, frozenset({target}))
    except ConfigError as exc:
        raise ProblemError(
            503, "unavailable", "Service Unavailable", f"batches need the targets file: {exc}"
        ) from exc
    unknown = targets.unknown(target, listing=False)
    if unknown:
        raise ProblemError(
            422,
            "invalid-batch",
            "Invalid batch",
            f"target: {unknown}",
            errors=[FieldError(field="target", message=unknown)],
        )
    with tempfile.TemporaryDirectory(prefix="startproc-batch-") as tmp:
        path, name, implied = await _spool(request, FsPath(tmp))
        if batch_id is None and name is None:
            raise invalid_batch("a body without a file name needs the batch_id parameter")
        try:
            options = batch.BatchOptions(
                target=target,
                process=process,
                maps=map_ or (),
                business_key=business_key,
                batch_id=batch_id or batch.default_batch_id(str(name), target, process),
                fmt=fmt or implied,
                delimiter=delimiter,
                encoding=encoding,
                skip_invalid=skip_invalid,
                dry_run=dry_run,
            )
            summary = await run_in_threadpool(
                lambda: batch.submit(path, options, settings=cfg, targets=targets)
            )
        except ConfigError as exc:
            raise invalid_batch(str(exc).replace(str(path), name or "body")) from None
        except (batch.BatchError, KombuError, RedisError, OSError) as exc:
            raise unavailable("the broker or Redis", exc) from exc
    if summary.invalid and not skip_invalid:
        raise ProblemError(
            422,
            "invalid-batch",
            "Invalid batch",
            f"{summary.invalid} of {summary.rows} rows are invalid; nothing was enqueued",
            errors=_row_errors(summary),
            extra={"batch_id": summary.batch_id, "rows": summary.rows, "valid": summary.valid},
        )
    body = BatchAccepted(
        batch_id=summary.batch_id,
        target=summary.target,
        process=summary.process,
        format=summary.format,
        rows=summary.rows,
        valid=summary.valid,
        invalid=summary.invalid,
        enqueued=summary.enqueued,
        already_done=summary.already_done,
    ).model_dump()
    if dry_run:
        return JSONResponse(body, status_code=200)
    location = f"/batches/{quote(summary.batch_id, safe=':')}"
    return JSONResponse(body, status_code=202, headers={"Location": location})


@router.get(
    "/batches/{batch_id:path}",
    summary="Counters of a batch",
    response_model=BatchStatusOut,
    responses=problems(401, 404, 422, 503),
)
async def get_batch(
    request: Request, batch_id: Annotated[str, Path(pattern=BATCH_ID)]
) -> BatchStatusOut:
    """Created/duplicate/failed counts over every run of the batch id; 404 if never seen."""
    cfg = intake_of(request).settings
    try:
        status = await run_in_threadpool(batch.status, batch_id, cfg)
    except (RedisError, ConfigError) as exc:
        raise unavailable("Redis", exc) from exc
    if not status.known:
        raise ProblemError(404, "not-found", "Not Found", f"no batch {batch_id!r}")
    return BatchStatusOut.model_validate(status.to_dict())
