"""The batch on disk: what pass 2 sends, and which job answers for each row.

Two anonymous temporary files (unlinked from the start, so even a killed
process leaves nothing behind), so memory stays flat whatever the size:

* the **spool**, written while validating: one line per row (valid rows
  with their key and variables, rejected rows with their reasons). What is
  sent is exactly what was validated (a file edited between the passes
  cannot slip an unchecked row in), and stdin needs no second read. Cost:
  about the input's size again in ``$TMPDIR``. A valid row's variables are
  kept after a tab as the JSON text they have in the job (``json.dumps``
  with its defaults), so sending needs neither to parse nor to re-encode them.
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
from typing import IO, NamedTuple

from worker.batch.rows import ValidRow


class Entry(NamedTuple):
    """One row as the spool remembers it; ``key`` is None for a rejected row.

    ``variables``: the row's variables as JSON text (``json.dumps(variables)``).
    """

    line: int
    business_key: str | None
    key: str | None = None
    variables: str | None = None
    error: str | None = None


def _temporary() -> IO[bytes]:
    return tempfile.TemporaryFile(prefix="startproc-batch-")


class _LineFile:
    def __init__(self) -> None:
        self._file = _temporary()

    def _write(self, data: bytes) -> None:
        self._file.write(data + b"\n")

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


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class Spool(_LineFile):
    def add_valid(self, row: ValidRow) -> None:
        head = _COMPACT({"l": row.line, "k": row.business_key, "i": row.key})
        # JSON text holds no raw tab or newline: the tab splits, the newline ends the line
        self._write(f"{head}\t{row.text}".encode())

    def add_rejected(self, line: int, business_key: str | None, error: str) -> None:
        self._write(_COMPACT({"l": line, "k": business_key, "e": error}).encode())

    def entries(self, valid_only: bool = False) -> Iterator[Entry]:
        for raw in self._lines():
            head, tab, variables = raw.partition(b"\t")
            if valid_only and not tab:
                continue
            data = json.loads(head)
            text = variables.rstrip(b"\n").decode() if tab else None
            yield Entry(data["l"], data.get("k"), data.get("i"), text, data.get("e"))


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
