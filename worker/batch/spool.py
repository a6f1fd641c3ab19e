"""The batch on disk: what pass 2 sends, and which job answers for each row.

Two anonymous temporary files (unlinked from the start, so even a killed
process leaves nothing behind), so memory stays flat whatever the size:

* the **spool**, written while validating: one compact JSON line per row
  (valid rows with their key and variables, rejected rows with their
  reasons). What is sent is exactly what was validated (a file edited
  between the passes cannot slip an unchecked row in), and stdin needs no
  second read. Cost: about the input's size again in ``$TMPDIR``.
* the **manifest**, written while sending: per valid row, in the same order,
  the job id that answers for it (the new job, or the earlier one whose
  result made re-sending unnecessary). The wait and the report read it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

from worker.batch.rows import ValidRow


@dataclass(frozen=True)
class Entry:
    """One row as the spool remembers it; ``key`` is None for a rejected row."""

    line: int
    business_key: str | None
    key: str | None = None
    variables: dict[str, Any] | None = None
    error: str | None = None


def _temporary() -> IO[bytes]:
    return tempfile.TemporaryFile(prefix="startproc-batch-")


class _LineFile:
    def __init__(self) -> None:
        self._file = _temporary()

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.write(b"\n")

    def _lines(self) -> Iterator[bytes]:
        """Every line from the start (one reader at a time: the file has one position).

        A plain loop, not ``yield from``: closing an abandoned reader (a wait
        that timed out) must not close the file under the next one.
        """
        self._file.flush()
        self._file.seek(0)
        for line in self._file:  # noqa: UP028
            yield line

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> _LineFile:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


class Spool(_LineFile):
    def add_valid(self, row: ValidRow) -> None:
        entry = {"l": row.line, "k": row.business_key, "i": row.key, "v": row.variables}
        self._write(json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode())

    def add_rejected(self, line: int, business_key: str | None, error: str) -> None:
        entry = {"l": line, "k": business_key, "e": error}
        self._write(json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode())

    def entries(self, valid_only: bool = False) -> Iterator[Entry]:
        for raw in self._lines():
            data = json.loads(raw)
            if valid_only and "i" not in data:
                continue
            yield Entry(data["l"], data.get("k"), data.get("i"), data.get("v"), data.get("e"))


@dataclass(frozen=True)
class Answer:
    """The job answering for a valid row; ``earlier``: a previous run's job, not re-sent."""

    job_id: str
    earlier: bool


class Manifest(_LineFile):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def add(self, job_id: str, earlier: bool) -> None:
        self._write(f"{job_id}\t{int(earlier)}".encode())
        self.count += 1

    def answers(self) -> Iterator[Answer]:
        for raw in self._lines():
            job_id, _, earlier = raw.rstrip(b"\n").decode().partition("\t")
            yield Answer(job_id, earlier == "1")
