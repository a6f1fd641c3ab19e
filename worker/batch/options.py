"""What a batch run is asked to do, and what it answers: the API types of `worker.batch`.

`BatchOptions` is what ``startproc batch``, the intake's ``POST /batches``
and the console all build from their arguments; `BatchSummary` is what a run
returns. Kept apart from the run itself so that the doors can describe a
batch without loading the machinery that sends one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.batch.mapping import BatchMapping, Column
from worker.batch.rows import RowError
from worker.batch.source import Format
from worker.errors import ConfigError, StartprocError

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


