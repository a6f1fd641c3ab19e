"""Batch pages: upload and validate, fix bad rows, start, follow, download the report, re-run."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from worker import batch
from worker.batch.mapping import parse_map
from worker.console.batch_runs import Upload, apply_fixes, start, validate
from worker.console.context import Operator, Refused, SignedIn, console_of
from worker.console.render import page
from worker.errors import ConfigError

router = APIRouter()

CHUNK = 1024 * 1024
FIX_FIELD = "fix:"  # fix:<line>:<column>


def _upload(request: Request, upload_id: str) -> Upload:
    upload = console_of(request).runs.get(upload_id)
    if upload is None:
        raise HTTPException(404, "No such upload here (the intake process that took it keeps it)")
    return upload


def _to(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(f"{request.scope.get('root_path', '')}{path}", status_code=303)


def _form_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    console = console_of(request)
    return page(
        request,
        "batches.html",
        status,
        nav="batches",
        targets=console.intake.targets().names(),
        uploads=console.runs.newest(),
        error=error,
        lookup=None,
    )


@router.get("/batches")
async def batches(request: Request, _s: SignedIn, batch_id: str = "") -> Response:
    if not batch_id.strip():
        return _form_page(request)
    console = console_of(request)
    status = await run_in_threadpool(batch.status, batch_id.strip(), console.settings)
    return page(
        request,
        "batches.html",
        nav="batches",
        targets=console.intake.targets().names(),
        uploads=console.runs.newest(),
        error=None,
        lookup=status,
    )


def _options(fields: dict[str, str], targets: list[str]) -> tuple[dict[str, object], str | None]:
    """The form's options, checked as ``startproc batch`` checks its arguments."""
    target, process = fields.get("target", ""), fields.get("process", "").strip()
    if target not in targets:
        return {}, "choose a target of the targets file"
    if not process:
        return {}, "the process is required"
    maps = tuple(line.strip() for line in fields.get("maps", "").splitlines() if line.strip())
    try:
        for each in maps:
            parse_map(each)
    except ConfigError as exc:
        return {}, f"column mapping: {exc}"
    return {
        "target": target,
        "process": process,
        "business_key": fields.get("business_key", "").strip() or None,
        "maps": maps,
    }, None


@router.post("/batches")
async def upload_batch(request: Request, session: Operator) -> Response:
    console = console_of(request)
    form = await request.form()
    file = form.get("file")
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not isinstance(file, UploadFile) or not file.filename:
        return _form_page(request, "choose a CSV or JSONL file", 400)
    options, error = _options(fields, console.intake.targets().names())
    if error:
        return _form_page(request, error, 400)
    name = Path(file.filename).name
    try:
        batch_id = batch.check_batch_id(
            fields.get("batch_id", "").strip()
            or batch.default_batch_id(name, str(options["target"]), str(options["process"]))
        )
    except ConfigError as exc:
        return _form_page(request, str(exc), 400)
    def write(path: Path) -> None:  # the intake's body limit already bounds the upload
        file.file.seek(0)
        with path.open("wb") as out:
            shutil.copyfileobj(file.file, out, CHUNK)

    assert session.user is not None
    by = session.user.name
    upload = await run_in_threadpool(
        lambda: console.runs.add(name, write, batch_id=batch_id, by=by, **options)
    )
    await run_in_threadpool(validate, upload, console.settings, console.intake.targets())
    return _to(request, f"/batches/{upload.id}")


@router.get("/batches/{upload_id}")
async def upload_page(request: Request, _s: SignedIn, upload_id: str) -> Response:
    upload = _upload(request, upload_id)
    run = upload.run
    expected = upload.summary.valid if upload.summary else 0
    return page(
        request,
        "batch.html",
        nav="batches",
        upload=upload,
        run=run,
        progress=run.progress(expected) if run else None,
    )


@router.get("/batches/{upload_id}/progress")
async def progress(request: Request, _s: SignedIn, upload_id: str) -> Response:
    upload = _upload(request, upload_id)
    expected = upload.summary.valid if upload.summary else 0
    body = upload.run.progress(expected) if upload.run else {"phase": "validated"}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.post("/batches/{upload_id}/fix")
async def fix_rows(request: Request, _s: Operator, upload_id: str) -> Response:
    """Corrected cells of the bad rows: the file is rewritten and validated again."""
    console = console_of(request)
    upload = _upload(request, upload_id)
    if upload.run is not None:
        raise Refused("this upload was started: upload a corrected file instead")
    form = await request.form()
    known = {row.line: row for row in upload.bad_rows}
    fixes: dict[int, dict[str, str]] = {}
    for name, value in form.items():
        if not name.startswith(FIX_FIELD) or not isinstance(value, str):
            continue
        line_text, _, column = name[len(FIX_FIELD) :].partition(":")
        row = known.get(int(line_text)) if line_text.isdigit() else None
        editable = row is not None and (column in row.values or column in upload.header)
        if row is not None and editable and value != row.values.get(column, ""):
            fixes.setdefault(row.line, {})[column] = value
    await run_in_threadpool(apply_fixes, upload, fixes)
    await run_in_threadpool(validate, upload, console.settings, console.intake.targets())
    return _to(request, f"/batches/{upload.id}")


@router.post("/batches/{upload_id}/start")
async def start_batch(request: Request, _s: Operator, upload_id: str) -> Response:
    return _start(
        request,
        upload_id,
        lambda upload: upload.startable,
        "this upload cannot start: it has invalid rows, or a run is going on",
    )


@router.post("/batches/{upload_id}/rerun")
async def rerun_failed(request: Request, _s: Operator, upload_id: str) -> Response:
    """The same file under the same batch id: started rows are skipped, failed ones sent again."""
    return _start(
        request,
        upload_id,
        lambda upload: upload.failed_rows != 0 and upload.startable,
        "there are no failed rows to re-run, or a run is going on",
    )


def _start(
    request: Request, upload_id: str, allowed: Callable[[Upload], bool], refusal: str
) -> Response:
    """Start a run of the upload when ``allowed`` (checked under the runs' lock), else refuse."""
    console = console_of(request)
    upload = _upload(request, upload_id)
    with console.runs.lock:
        if not allowed(upload):
            raise Refused(refusal)
        start(upload, console.settings, console.intake.targets())
    return _to(request, f"/batches/{upload.id}")


@router.get("/batches/{upload_id}/report.csv")
async def report(request: Request, _s: SignedIn, upload_id: str) -> Response:
    upload = _upload(request, upload_id)
    run = upload.run
    if run is None or not run.finished or not run.report.exists():
        raise Refused("the report is written when the run has finished")
    stem = Path(upload.name).stem or "batch"
    return FileResponse(run.report, media_type="text/csv", filename=f"{stem}.report.csv")
