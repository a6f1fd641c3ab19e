"""The validated batch on disk: what pass 2 sends, and what the report and the wait read.

Pass 1 writes one compact JSON line per row (valid rows with their job id,
key and variables; rejected rows with their reasons) to an anonymous
temporary file, so what is sent is exactly what was validated (a file
edited between the passes cannot slip an unchecked row in), stdin needs no
second read, and memory stays flat. The cost is disk: about the size of the
input again, in ``$TMPDIR``, removed when the batch ends (the file is
unlinked from the start, so even a killed process leaves nothing behind).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

from worker.batch_rows import ValidRow


@dataclass(frozen=True)
class Entry:
    """One row as the spool remembers it; ``job_id`` is None for a rejected row."""

    line: int
    business_key: str | None
    job_id: str | None = None
    key: str | None = None
    variables: dict[str, Any] | None = None
    error: str | None = None


class Spool:
    def __init__(self, directory: str | None = None) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="startproc-batch-", dir=directory)
        self.valid = 0
        self.rejected = 0

    def add_valid(self, row: ValidRow) -> None:
        entry = {"l": row.line, "k": row.business_key, "j": row.job_id, "i": row.key}
        self._write(entry, row.variables)
        self.valid += 1

    def add_rejected(self, line: int, business_key: str | None, error: str) -> None:
        self._write({"l": line, "k": business_key, "e": error}, None)
        self.rejected += 1

    def _write(self, entry: dict[str, Any], variables: dict[str, Any] | None) -> None:
        if variables is not None:
            entry["v"] = variables
        self._file.write(json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode())
        self._file.write(b"\n")

    def entries(self, valid_only: bool = False) -> Iterator[Entry]:
        """Every row in file order (reads the spool from its start each time)."""
        self._file.flush()
        self._file.seek(0)
        for raw in self._file:
            data = json.loads(raw)
            if valid_only and "j" not in data:
                continue
            yield Entry(
                line=data["l"],
                business_key=data.get("k"),
                job_id=data.get("j"),
                key=data.get("i"),
                variables=data.get("v"),
                error=data.get("e"),
            )

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()
