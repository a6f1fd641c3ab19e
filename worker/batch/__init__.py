"""Batch case creation: a CSV or JSONL file of rows -> validated start jobs, each started once.

The public API (``from worker.batch import BatchOptions, submit``): the names
load lazily, so a module that only needs `worker.batch.options` or one step
(rows, spool, ...) does not load the whole run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.batch.options import (
        BatchError,
        BatchInterrupted,
        BatchOptions,
        BatchSummary,
        check_batch_id,
        default_batch_id,
    )
    from worker.batch.results import BatchStatus
    from worker.batch.run import status, submit

__all__ = [
    "BatchError",
    "BatchInterrupted",
    "BatchOptions",
    "BatchStatus",
    "BatchSummary",
    "check_batch_id",
    "default_batch_id",
    "status",
    "submit",
]

_HOMES = {
    "BatchError": "worker.batch.options",
    "BatchInterrupted": "worker.batch.options",
    "BatchOptions": "worker.batch.options",
    "BatchSummary": "worker.batch.options",
    "check_batch_id": "worker.batch.options",
    "default_batch_id": "worker.batch.options",
    "BatchStatus": "worker.batch.results",
    "status": "worker.batch.run",
    "submit": "worker.batch.run",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        from importlib import import_module

        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'worker.batch' has no attribute {name!r}")
