"""The rejects file: every row that failed validation, with where and why.

Written while validating (streamed, never collected), as CSV or JSONL by
the file's suffix (else the input's format): CSV gets ``line,column,error``
in front of the original columns (a JSONL input's row goes in one ``row``
column as JSON), JSONL gets ``{"line", "errors": [{"column", "reason"}], "row"}``. It is a
list to fix from, not a file to feed back: fix the rows in the original file
and run it again; the rows already started are skipped by their keys.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from worker.batch.rows import RowError
from worker.batch.source import Format


def default_rejects_path(source_name: str, fmt: Format, batch_id: str) -> Path:
    """``customers.csv`` -> ``customers.rejects.csv`` beside it; stdin -> the working directory."""
    suffix = ".jsonl" if fmt == "jsonl" else ".csv"
    if source_name == "-":
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in batch_id)[:100]
        return Path(f"{safe}.rejects{suffix}")
    path = Path(source_name)
    return path.with_name(f"{path.stem}.rejects{suffix}")


def rejects_format(path: Path, input_format: Format) -> Format:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "csv" if suffix == ".csv" else input_format


def _json(values: dict[str, Any]) -> str:
    return json.dumps(values, ensure_ascii=False, default=str)


class RejectsWriter:
    """Opened on the first rejected row, so a clean file leaves no empty rejects file behind."""

    def __init__(self, path: Path, input_format: Format, header: list[str]) -> None:
        self.path = path
        self.format = rejects_format(path, input_format)
        self.header = header if input_format == "csv" else []
        self.count = 0
        self._handle: IO[str] | None = None
        self._csv: Any = None

    def write(self, line: int, values: dict[str, Any], errors: list[RowError]) -> None:
        handle = self._handle or self._open()
        self.count += 1
        if self.format == "jsonl":
            record = {
                "line": line,
                "errors": [{"column": e.column, "reason": e.reason} for e in errors],
                "row": values,
            }
            handle.write(_json(record) + "\n")
            return
        columns = ";".join(dict.fromkeys(e.column for e in errors if e.column))
        reasons = "; ".join(e.reason for e in errors)
        cells = [values.get(h, "") for h in self.header] if self.header else [_json(values)]
        self._csv.writerow([line, columns, reasons, *cells])

    def _open(self) -> IO[str]:
        self._handle = self.path.open("w", encoding="utf-8", newline="")
        if self.format == "csv":
            self._csv = csv.writer(self._handle)
            self._csv.writerow(["line", "column", "error", *(self.header or ["row"])])
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()

    def __enter__(self) -> RejectsWriter:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()
