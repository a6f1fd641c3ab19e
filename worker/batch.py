"""Batch case creation: a CSV or JSONL file of rows -> validated start jobs, each started once.

    from worker.batch import BatchOptions, submit
    options = BatchOptions(target="orders", process="onboarding",
                           business_key="customer_id", wait=600, report="started.csv")
    summary = submit("customers.csv", options)

`BatchOptions` is what ``startproc batch`` and the intake's ``POST /batches``
both build from their arguments; ``submit(path, target=..., ...)`` with the
same names as keywords is a shorthand for it.

How a file goes through (each step streams; memory stays flat):

1. **validate** the whole file first (`batch_rows.Validator`): types, business
   keys, duplicates inside the file, the engine's rules. Valid rows go to a
   disk spool (`batch_spool`), bad ones to the rejects file. Any bad row and
   no ``skip_invalid``: nothing is sent.
2. **enqueue** the spooled rows in chunks on one broker connection
   (`batch_send`), skipping rows an earlier run already started.
3. optionally **wait** for every row's result and write a per-row **report**
   (`batch_results`).

Re-running is the recovery for everything (Ctrl-C, a broker outage, failed
rows, a longer file): idempotency keys are derived from the batch id and
the rows, so rows already started are not started again, and rows that
failed are tried again. The batch id defaults to
``{file name}:{target}:{process}``; stdin needs an explicit one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from kombu.exceptions import KombuError

from worker.batch_mapping import BatchMapping, Column, load_mapping, parse_map
from worker.batch_progress import NullProgress, Progress
from worker.batch_rejects import RejectsWriter, default_rejects_path
from worker.batch_results import (
    BatchStatus,
    Tally,
    read_status,
    report_rows,
    wait_for,
    write_meta,
    write_report,
)
from worker.batch_rows import RowError, Validator, ValidRow
from worker.batch_send import InterruptGuard, Sender, chunks
from worker.batch_source import Format, Source, open_source, spool_stdin
from worker.batch_spool import Entry, Manifest, Spool
from worker.config import Settings, Targets, load_targets
from worker.config import settings as current_settings
from worker.connections import shared_redis
from worker.engines import build_engine
from worker.engines.base import Engine
from worker.errors import ConfigError, StartprocError
from worker.models import iso_ms, utcnow

__all__ = [
    "BatchError",
    "BatchInterrupted",
    "BatchOptions",
    "BatchStatus",
    "BatchSummary",
    "default_batch_id",
    "status",
    "submit",
]

MAX_BATCH_ID = 200
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+$")
KEPT_ERRORS = 50


class BatchError(StartprocError):
    """The broker or Redis failed mid-batch; re-running the same command continues safely."""


@dataclass
class BatchSummary:
    """What a submit did; ``exit_code`` follows the CLI's 0/1/2/3 convention."""

    batch_id: str
    target: str
    process: str
    source: str
    format: str
    encoding: str
    delimiter: str | None
    dry_run: bool = False
    skip_invalid: bool = False
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    errors: list[RowError] = field(default_factory=list)
    rejects_path: str | None = None
    enqueued: int = 0
    already_done: int = 0
    chunks: int = 0
    interrupted: bool = False
    phase: str = "validate"
    waited: bool = False
    created: int = 0
    duplicate: int = 0
    failed: int = 0
    pending: int = 0
    report_path: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def sent_nothing(self) -> bool:
        """Validation stopped the batch (or it was a dry run)."""
        return self.dry_run or (self.invalid > 0 and not self.skip_invalid)

    @property
    def exit_code(self) -> int:
        if self.invalid and not self.skip_invalid:
            return 2
        if self.interrupted or self.failed:
            return 1
        if self.waited and self.pending:
            return 3
        return 0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["exit_code"] = self.exit_code
        return data


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a `submit` callback) stopped the batch at a chunk boundary; see ``summary``."""

    def __init__(self, summary: BatchSummary) -> None:
        super().__init__(f"batch {summary.batch_id} interrupted while {summary.phase}")
        self.summary = summary


def default_batch_id(source_name: str, target: str, process: str) -> str:
    """``{file name}:{target}:{process}``: the same file sent again is the same batch."""
    return check_batch_id(f"{Path(source_name).name}:{target}:{process}")


def check_batch_id(value: str) -> str:
    if not value or len(value) > MAX_BATCH_ID or not _PRINTABLE.match(value):
        raise ConfigError(f"batch id {value[:60]!r}: 1-{MAX_BATCH_ID} printable characters")
    return value


@dataclass(frozen=True)
class BatchOptions:
    """What to start from a file's rows, and how: everything of a submit but the file.

    ``wait``: seconds to wait for every row's result (``float("inf")``: no
    limit). ``rejects``, ``report``: where to write the invalid rows and the
    per-row report. ``chunk``: rows per published chunk.
    """

    target: str
    process: str
    mapping: BatchMapping | str | Path | None = None
    maps: Sequence[str | Column] = ()
    business_key: str | None = None
    batch_id: str | None = None
    fmt: Format | None = None
    delimiter: str | None = None
    encoding: str | None = None
    skip_invalid: bool = False
    rejects: str | Path | None = None
    dry_run: bool = False
    wait: float | None = None
    report: str | Path | None = None
    chunk: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "maps", tuple(self.maps))  # frozen all the way down

    def check(self) -> None:
        """Usage errors no file is needed to see (`ConfigError`, worded for the command line)."""
        if self.chunk < 1:
            raise ConfigError("--chunk: must be at least 1")
        if self.dry_run and (self.wait is not None or self.report is not None):
            raise ConfigError("--dry-run sends nothing: --wait and --report need a real run")


def submit(
    path: str | Path,
    options: BatchOptions | None = None,
    *,
    progress: Progress | None = None,
    on_chunk: Callable[[int, BatchSummary], None] | None = None,
    settings: Settings | None = None,
    targets: Targets | None = None,
    **fields: Any,
) -> BatchSummary:
    """Validate ``path`` (``"-"``: stdin) and start one instance per valid row, once.

    ``options`` say what to start and how; keyword ``fields`` named like
    `BatchOptions`' are a shorthand for them (or override the given ones).
    Raises `ConfigError` for usage problems (bad options, unreadable file,
    unknown target), `BatchError` when the broker or Redis fails, and
    `BatchInterrupted` (a KeyboardInterrupt) on Ctrl-C, with the summary so far.
    """
    if options is None:
        opts = BatchOptions(**fields)
    else:
        opts = dataclasses.replace(options, **fields) if fields else options
    opts.check()
    cfg = settings or current_settings()
    if not opts.dry_run:
        cfg.require_broker()
    with contextlib.ExitStack() as stack:
        name = str(path)
        file_path = Path(path)
        if name == "-":
            if not opts.batch_id:
                raise ConfigError(
                    "reading stdin needs --batch-id (it has no file name to derive one)"
                )
            file_path = spool_stdin()
            stack.callback(file_path.unlink, missing_ok=True)
        source = open_source(
            file_path,
            fmt=opts.fmt,
            encoding=opts.encoding,
            delimiter=opts.delimiter,
            display_name=name,
        )
        run = _Run(
            cfg=cfg,
            source=source,
            mapping=_mapping(opts.mapping, opts.maps, opts.business_key, source),
            engine=_engine(
                targets or load_targets(cfg.targets, frozenset({opts.target})), opts.target
            ),
            summary=BatchSummary(
                batch_id=check_batch_id(opts.batch_id)
                if opts.batch_id
                else default_batch_id(name, opts.target, opts.process),
                target=opts.target,
                process=opts.process,
                source=name,
                format=source.format,
                encoding=source.encoding,
                delimiter=source.delimiter if source.format == "csv" else None,
                dry_run=opts.dry_run,
                skip_invalid=opts.skip_invalid,
            ),
            progress=progress or NullProgress(),
            chunk=opts.chunk,
            on_chunk=on_chunk,
        )
        stack.callback(run.engine.session.close)
        return run.execute(
            rejects=Path(opts.rejects) if opts.rejects else None,
            wait=opts.wait,
            report=Path(opts.report) if opts.report else None,
        )


def status(batch_id: str, settings: Settings | None = None) -> BatchStatus:
    """The batch's counters (all runs of the batch id) and the row count of its latest submit."""
    cfg = settings or current_settings()
    return read_status(shared_redis(cfg.require_redis()), batch_id)


def _mapping(
    mapping: BatchMapping | str | Path | None,
    maps: Sequence[str | Column],
    business_key: str | None,
    source: Source,
) -> BatchMapping:
    base = (
        mapping
        if isinstance(mapping, BatchMapping)
        else (load_mapping(Path(mapping)) if mapping else BatchMapping())
    )
    columns = [m if isinstance(m, Column) else parse_map(m) for m in maps]
    merged = base.merged(columns, business_key).with_defaults_for(source.format)
    if source.format == "csv":
        merged.check_header(source.header())
    return merged


def _engine(targets: Targets, name: str) -> Engine:
    if not targets.declares(name):
        raise ConfigError(f"--target: {targets.unknown(name)}")
    return build_engine(targets.require(name))


@dataclass
class _Run:
    cfg: Settings
    source: Source
    mapping: BatchMapping
    engine: Engine
    summary: BatchSummary
    progress: Progress
    chunk: int
    on_chunk: Callable[[int, BatchSummary], None] | None
    _base: dict[str, Any] = field(default_factory=dict, init=False)

    def execute(
        self, rejects: Path | None, wait: float | None, report: Path | None
    ) -> BatchSummary:
        s = self.summary
        validator = Validator(self.engine, s.target, s.process, s.batch_id, self.mapping)
        self._base = validator.job_base
        if rejects is None and s.skip_invalid and not s.dry_run:
            rejects = default_rejects_path(s.source, self.source.format, s.batch_id)
        spool = None if s.dry_run else Spool()
        manifest = Manifest()
        try:
            self._validate(validator, spool, rejects)
            if s.sent_nothing or spool is None:
                return s
            client = self._redis(required=wait is not None or report is not None)
            s.phase = "enqueue"
            self._enqueue(spool, manifest, client)
            if wait is not None and client is not None:
                s.phase = "wait"
                self._wait(manifest, client, None if wait == float("inf") else wait)
            if report is not None:
                s.phase = "report"
                self._report(spool, manifest, client, report)
            s.phase = "done"
            return s
        except KeyboardInterrupt:
            s.interrupted = True
            raise BatchInterrupted(s) from None
        except (KombuError, redis.RedisError, OSError) as exc:
            raise BatchError(
                f"batch {s.batch_id}: {type(exc).__name__} while {s.phase}: {exc}; "
                f"{s.enqueued} rows sent so far. Re-run the same command to continue: "
                "rows already started are not started again"
            ) from exc
        finally:
            self.progress.stop()
            manifest.close()
            if spool is not None:
                spool.close()

    def _validate(self, validator: Validator, spool: Spool | None, rejects: Path | None) -> None:
        s, started = self.summary, time.monotonic()
        header = self.source.header()
        position = [0]
        self.progress.start("validate", self.source.size or None)
        with contextlib.ExitStack() as stack:
            writer = None
            if rejects is not None:
                writer = stack.enter_context(RejectsWriter(rejects, self.source.format, header))
            for record in self.source.records(position):
                s.rows += 1
                outcome = validator.check(record)
                if isinstance(outcome, ValidRow):
                    s.valid += 1
                    if spool is not None:
                        spool.add_valid(outcome)
                else:
                    s.invalid += 1
                    if len(s.errors) < KEPT_ERRORS:
                        s.errors.extend(outcome[: KEPT_ERRORS - len(s.errors)])
                    if writer is not None:
                        writer.write(record.line, record.values, outcome)
                    if spool is not None:
                        spool.add_rejected(
                            record.line, self._raw_key(record.values), _text(outcome)
                        )
                if s.rows % 512 == 0:
                    self.progress.update(position[0], s.rows)
            if writer is not None and writer.count:
                s.rejects_path = str(writer.path)
        self.progress.update(self.source.size, s.rows)
        self.progress.stop()
        s.seconds["validate"] = round(time.monotonic() - started, 3)

    def _raw_key(self, values: dict[str, Any]) -> str | None:
        column = self.mapping.business_key
        value = values.get(column) if column else None
        if value is None:
            return None
        return str(value).strip() or None

    def _redis(self, required: bool) -> redis.Redis | None:
        url = self.cfg.require_redis() if required else self.cfg.effective_redis_url()
        return shared_redis(url) if url else None

    def _enqueue(self, spool: Spool, manifest: Manifest, client: redis.Redis | None) -> None:
        s, started = self.summary, time.monotonic()
        if client is not None:
            write_meta(
                client,
                s.batch_id,
                self.cfg.retention_days * 86400,
                expected=s.valid,
                target=s.target,
                process=s.process,
                source=s.source,
            )
        self.progress.start("enqueue", s.valid)
        broker = self.cfg.require_broker()
        with InterruptGuard() as guard, Sender(broker, self.cfg.jobs_queue, client) as sender:
            for entries in chunks(spool.entries(valid_only=True), self.chunk):
                now = iso_ms(utcnow())
                for job_id, earlier in sender.send([self._job(e, now) for e in entries]):
                    manifest.add(job_id, earlier)
                    s.already_done += earlier
                    s.enqueued += not earlier
                s.chunks += 1
                self.progress.update(s.enqueued + s.already_done, s.enqueued + s.already_done)
                if self.on_chunk is not None:
                    self.on_chunk(s.chunks, s)
                guard.checkpoint()
        self.progress.stop()
        s.seconds["enqueue"] = round(time.monotonic() - started, 3)

    def _job(self, entry: Entry, enqueued_at: str) -> dict[str, Any]:
        job = dict(
            self._base,
            variables=entry.variables or {},
            idempotency_key=entry.key,
            job_id=str(uuid.uuid4()),
            enqueued_at=enqueued_at,
        )
        if entry.business_key is not None:
            job["business_key"] = entry.business_key
        return job

    def _wait(self, manifest: Manifest, client: redis.Redis, timeout: float | None) -> None:
        s, started = self.summary, time.monotonic()
        s.waited = True
        self.progress.start("wait", manifest.count)

        def update(tally: Tally) -> None:
            s.created, s.duplicate, s.failed = tally.created, tally.duplicate, tally.failed
            s.pending = tally.pending
            self.progress.update(tally.done, tally.done, tally.note())

        ids = (answer.job_id for answer in manifest.answers())
        update(wait_for(client, ids, manifest.count, timeout, update))
        self.progress.stop()
        s.seconds["wait"] = round(time.monotonic() - started, 3)

    def _report(
        self, spool: Spool, manifest: Manifest, client: redis.Redis | None, path: Path
    ) -> None:
        started = time.monotonic()
        write_report(path, report_rows(client, spool.entries(), manifest.answers()))
        self.summary.report_path = str(path)
        self.summary.seconds["report"] = round(time.monotonic() - started, 3)


def _text(errors: list[RowError]) -> str:
    return "; ".join(f"{e.column}: {e.reason}" if e.column else e.reason for e in errors)
