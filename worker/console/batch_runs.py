"""Batch files uploaded in the console: validated, fixed row by row, started, followed.

Everything a run does is `worker.batch.submit`, the code ``startproc batch``
and ``POST /batches`` run, with the same options: a dry run validates (the
report lists each bad row with its line, column and reason before anything
is sent), a real run sends, waits for every row's result and writes the
per-row report. Re-running the failed rows is submitting the same file
under the same batch id again: rows already started are skipped by their
idempotency keys, failed ones are sent again.

Uploads live in ``STARTPROC_UI_DATA_DIR`` (default: a private temporary
folder of the intake process); the runs are followed in this process's
memory, so a restarted intake forgets its console runs (their jobs go on,
and ``startproc batch status`` still counts them). The newest `KEEP`
uploads are kept.
"""

from __future__ import annotations

import csv
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from worker import batch
from worker.batch.source import open_source
from worker.config import Settings
from worker.errors import ConfigError
from worker.targets import Targets

log = structlog.get_logger("worker.console")

KEEP = 50
WAIT_SECONDS = 6 * 3600.0
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class BadRow:
    line: int
    values: dict[str, str]
    errors: list[tuple[str, str]]

    @property
    def columns(self) -> set[str]:
        """The columns the errors name (to mark their cells)."""
        return {column for column, _ in self.errors}


@dataclass
class Run:
    """One submit of an upload, followed from the page (its summary updates as it goes)."""

    number: int
    report: Path
    started_at: float = field(default_factory=time.time)
    phase: str = "validate"
    summary: batch.BatchSummary | None = None
    finished_at: float | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def progress(self, expected: int) -> dict[str, Any]:
        s = self.summary
        created, duplicate, failed = (s.created, s.duplicate, s.failed) if s else (0, 0, 0)
        return {
            "phase": "done" if self.finished and not self.error else self.phase,
            "total": expected,
            "sent": (s.enqueued + s.already_done) if s else 0,
            "created": created,
            "duplicate": duplicate,
            "failed": failed,
            "done": created + duplicate + failed,
            "finished": self.finished,
            "error": self.error,
            "report": self.finished and self.report.exists(),
        }


class _Phases:
    """`worker.batch.progress.Progress` that only remembers the phase."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def start(self, phase: str, total: float | None) -> None:
        self.run.phase = phase

    def update(self, completed: float, rows: int, note: str = "") -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class Upload:
    id: str
    name: str
    path: Path
    target: str
    process: str
    business_key: str | None
    maps: tuple[str, ...]
    batch_id: str
    by: str
    created_at: float = field(default_factory=time.time)
    summary: batch.BatchSummary | None = None
    problem: str | None = None
    header: list[str] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)

    @property
    def run(self) -> Run | None:
        return self.runs[-1] if self.runs else None

    @property
    def startable(self) -> bool:
        s = self.summary
        valid = s is not None and s.invalid == 0 and s.valid > 0 and self.problem is None
        return valid and (self.run is None or self.run.finished)

    @property
    def failed_rows(self) -> int:
        run = self.run
        return run.summary.failed if run and run.finished and run.summary else 0

    def options(self, **extra: Any) -> batch.BatchOptions:
        return batch.BatchOptions(
            target=self.target,
            process=self.process,
            maps=self.maps,
            business_key=self.business_key,
            batch_id=self.batch_id,
            **extra,
        )


def safe_name(name: str) -> str:
    base = _SAFE_NAME.sub("_", Path(name).name).strip("._") or "upload"
    return base[:120]


class BatchRuns:
    """The uploads of one console process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.uploads: dict[str, Upload] = {}
        self.lock = threading.Lock()

    def add(self, name: str, write: Callable[[Path], None], **fields: Any) -> Upload:
        """A new upload: ``write`` stores the file at the path given to it."""
        upload_id = secrets.token_hex(8)
        folder = self.folder / upload_id
        folder.mkdir(parents=True, mode=0o700)
        path = folder / safe_name(name)
        write(path)
        upload = Upload(upload_id, Path(name).name, path, **fields)
        with self.lock:
            self.uploads[upload_id] = upload
            self._forget_old()
        return upload

    def get(self, upload_id: str) -> Upload | None:
        return self.uploads.get(upload_id)

    def newest(self) -> list[Upload]:
        return sorted(self.uploads.values(), key=lambda u: u.created_at, reverse=True)

    def _forget_old(self) -> None:
        for old in self.newest()[KEEP:]:
            if old.run is None or old.run.finished:
                self.uploads.pop(old.id, None)
                shutil.rmtree(old.path.parent, ignore_errors=True)


def validate(upload: Upload, cfg: Settings, targets: Targets) -> None:
    """A dry run of the upload; keeps the summary and the bad rows' values for fixing."""
    upload.problem, upload.bad_rows = None, []
    try:
        summary = batch.submit(
            upload.path, upload.options(dry_run=True), settings=cfg, targets=targets
        )
    except ConfigError as exc:
        upload.summary = None
        upload.problem = str(exc).replace(str(upload.path), upload.name)
        return
    upload.summary = summary
    source = open_source(
        upload.path,
        fmt=summary.format,  # type: ignore[arg-type]
        encoding=summary.encoding,
        delimiter=summary.delimiter,
    )
    upload.header = source.header() if summary.format == "csv" else []
    errors: dict[int, list[tuple[str, str]]] = {}
    for error in summary.errors:
        errors.setdefault(error.line, []).append((error.column, error.reason))
    for record in source.records():
        if record.line in errors:
            values = {str(k): _cell(v) for k, v in record.values.items()}
            upload.bad_rows.append(BadRow(record.line, values, errors[record.line]))
    if not upload.header:
        upload.header = sorted({k for row in upload.bad_rows for k in row.values})


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _jsonl_value(text: str) -> Any:
    """A fixed JSONL cell: JSON when it parses (``12``, ``true``), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_fixes(upload: Upload, fixes: dict[int, dict[str, str]]) -> None:
    """Rewrite the upload with the corrected cells of the given lines (then validate again)."""
    summary = upload.summary
    if summary is None or not fixes:
        return
    source = open_source(
        upload.path,
        fmt=summary.format,  # type: ignore[arg-type]
        encoding=summary.encoding,
        delimiter=summary.delimiter,
    )
    fixed = upload.path.with_name(upload.path.name + ".fixed")
    with fixed.open("w", encoding="utf-8", newline="") as out:
        if summary.format == "csv":
            header = source.header()
            writer = csv.writer(out, delimiter=summary.delimiter or ",")
            writer.writerow(header)
            for record in source.records():
                values = {**record.values, **fixes.get(record.line, {})}
                writer.writerow([_cell(values.get(column)) for column in header])
        else:
            for record in source.records():
                values = dict(record.values)
                for column, text in fixes.get(record.line, {}).items():
                    values[column] = _jsonl_value(text)
                out.write(json.dumps(values, ensure_ascii=False) + "\n")
    os.replace(fixed, upload.path)


def start(upload: Upload, cfg: Settings, targets: Targets) -> Run:
    """Submit the upload in a thread: send, wait for every row, write the per-row report."""
    run = Run(len(upload.runs) + 1, upload.path.with_name(f"report-{len(upload.runs) + 1}.csv"))
    upload.runs.append(run)

    def capture(_chunk: int, summary: batch.BatchSummary) -> None:
        run.summary = summary  # the very object submit keeps updating while it waits

    def work() -> None:
        try:
            run.summary = batch.submit(
                upload.path,
                upload.options(wait=WAIT_SECONDS, report=run.report),
                settings=cfg,
                targets=targets,
                progress=_Phases(run),
                on_chunk=capture,
            )
        except batch.BatchInterrupted as exc:
            run.summary, run.error = exc.summary, "interrupted"
        except (batch.BatchError, ConfigError) as exc:
            run.error = str(exc).replace(str(upload.path), upload.name)
        except Exception:
            log.exception("console.batch_failed", upload=upload.id, batch_id=upload.batch_id)
            run.error = "the run failed unexpectedly; the intake's log has the error"
        finally:
            run.finished_at = time.time()

    threading.Thread(target=work, name=f"console-batch-{upload.id}", daemon=True).start()
    return run
