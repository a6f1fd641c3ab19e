"""Batch case creation: a CSV or JSONL file of rows -> validated start jobs, each started once.

    from worker.batch import BatchOptions, submit
    options = BatchOptions(target="orders", process="onboarding",
                           business_key="customer_id", wait=600, report="started.csv")
    summary = submit("customers.csv", options)

`BatchOptions` is what ``startproc batch`` and the intake's ``POST /batches``
both build from their arguments; ``submit(path, target=..., ...)`` with the
same names as keywords is a shorthand for it.

How a file goes through (each step streams; memory stays flat):

1. **validate** the whole file first (`worker.batch.rows.Validator`): types, business
   keys, duplicates inside the file, the engine's rules. Valid rows go to a
   disk spool (`worker.batch.spool`), bad ones to the rejects file. Any bad row and
   no ``skip_invalid``: nothing is sent.
2. **enqueue** the spooled rows in chunks on one broker connection
   (`worker.batch.send`), skipping rows an earlier run already started.
3. optionally **wait** for every row's result and write a per-row **report**
   (`worker.batch.results`).

Re-running is the recovery for everything (Ctrl-C, a broker outage, failed
rows, a longer file): idempotency keys are derived from the batch id and
the rows, so rows already started are not started again, and rows that
failed are tried again. The batch id defaults to
``{file name}:{target}:{process}``; stdin needs an explicit one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from kombu.exceptions import KombuError

from worker.batch.mapping import BatchMapping, Column, load_mapping, parse_map
from worker.batch.options import (
    KEPT_ERRORS,
    BatchError,
    BatchInterrupted,
    BatchOptions,
    BatchSummary,
    check_batch_id,
    default_batch_id,
)
from worker.batch.outgoing import JobText, random_ids
from worker.batch.progress import NullProgress, Progress
from worker.batch.rejects import RejectsWriter, default_rejects_path
from worker.batch.results import (
    BatchStatus,
    Tally,
    read_status,
    report_rows,
    wait_for,
    write_meta,
    write_report,
)
from worker.batch.rows import RowError, Validator, ValidRow
from worker.batch.send import InterruptGuard, Sender, chunks
from worker.batch.source import Source, open_source, spool_stdin
from worker.batch.spool import Manifest, Spool
from worker.broker.connections import shared_redis
from worker.config import Settings
from worker.config import settings as current_settings
from worker.engines import build_engine
from worker.engines.base import Engine
from worker.errors import ConfigError
from worker.models import iso_ms, utcnow
from worker.targets import Targets, load_targets

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
        jobs = JobText(self._base)
        sender = Sender(broker, self.cfg.jobs_queue, client, s.target, s.batch_id)
        with InterruptGuard() as guard, sender:
            for entries in chunks(spool.entries(valid_only=True), self.chunk):
                now = iso_ms(utcnow())
                outgoing = [
                    jobs.job(job_id, e.variables or "{}", str(e.key), e.business_key, now)
                    for e, job_id in zip(entries, random_ids(len(entries)), strict=True)
                ]
                for job_id, earlier in sender.send(outgoing):
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
