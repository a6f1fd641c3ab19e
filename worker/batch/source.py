"""Reading batch files: CSV or JSONL, encoding and delimiter sniffed, one record at a time.

A source is read twice at most (never held in memory), so stdin is first
copied to a temporary file. Records carry the line they *start* on, because
that is the number an operator finds in an editor or a spreadsheet (header =
line 1). Problems of one record (a wrong field count, a line that is not a
JSON object) are yielded as that record's error; problems of the whole file
(no header, undecodable bytes) raise `SourceError` and stop everything.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple

from worker.errors import ConfigError

Format = Literal["csv", "jsonl"]
DELIMITERS = ",;\t|"
SNIFF_BYTES = 256 * 1024
_JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
_CSV_SUFFIXES = {".csv", ".tsv", ".txt"}

csv.field_size_limit(16 * 1024 * 1024)


class SourceError(ConfigError):
    """The file as a whole cannot be read (usage error: exit 2)."""


class Record(NamedTuple):
    """One row: its first line, its values by column, or why it could not be read."""

    line: int
    values: dict[str, Any]
    error: str | None = None


@dataclass(frozen=True)
class Source:
    """A batch file with its format, encoding and delimiter decided."""

    path: Path
    format: Format
    encoding: str
    delimiter: str
    size: int
    display_name: str

    def records(self, position: list[int] | None = None) -> Iterator[Record]:
        """Every record in file order; ``position[0]`` tracks bytes read (for progress)."""
        with self.path.open("rb") as raw:
            lines = self._lines(raw)
            reader = self._csv(lines) if self.format == "csv" else self._jsonl(lines)
            for count, record in enumerate(reader, start=1):
                if position is not None and count % 256 == 0:
                    position[0] = raw.tell()
                yield record
            if position is not None:
                position[0] = self.size

    def _lines(self, raw: BinaryIO) -> Iterator[str]:
        """Decoded lines; per line where the encoding allows, so a bad byte has a line number."""
        if "a\n".encode(self.encoding) != b"a\n":  # UTF-16/32: newlines are not single bytes
            number = 0
            try:
                for number, text in enumerate(  # noqa: B007 - read in the except
                    io.TextIOWrapper(raw, encoding=self.encoding, newline=""), start=1
                ):
                    yield text
            except UnicodeDecodeError as exc:
                raise SourceError(
                    f"{self.display_name}: after line {number}: not valid {self.encoding} "
                    f"({exc.reason}); give the file's encoding with --encoding"
                ) from None
            return
        decode = codecs.getdecoder(self.encoding)
        for number, data in enumerate(raw, start=1):
            try:
                yield decode(data)[0]
            except UnicodeDecodeError as exc:
                raise SourceError(
                    f"{self.display_name}: line {number}: not valid {self.encoding} "
                    f"({exc.reason}); give the file's encoding with --encoding"
                ) from None

    def header(self) -> list[str]:
        """The CSV header (JSONL has none: an empty list)."""
        if self.format != "csv":
            return []
        with self.path.open("rb") as raw:
            row = next(csv.reader(self._lines(raw), delimiter=self.delimiter), None)
        return self._check_header(row)

    def _check_header(self, row: list[str] | None) -> list[str]:
        if not row:
            raise SourceError(f"{self.display_name}: line 1: expected a header row")
        names = [name.strip() for name in row]
        seen: set[str] = set()
        for index, name in enumerate(names, start=1):
            if not name:
                raise SourceError(f"{self.display_name}: line 1: column {index} has no name")
            if name in seen:
                raise SourceError(f"{self.display_name}: line 1: column {name!r} appears twice")
            seen.add(name)
        return names

    def _csv(self, lines: Iterator[str]) -> Iterator[Record]:
        reader = csv.reader(lines, delimiter=self.delimiter, strict=False)
        header = self._check_header(next(reader, None))
        width = len(header)
        start = reader.line_num + 1
        for row in reader:
            line, start = start, reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip() and width > 1):
                continue  # blank line
            if len(row) != width:
                values = dict(zip(header, row, strict=False))
                yield Record(line, values, f"{len(row)} fields, the header has {width}")
                continue
            yield Record(line, dict(zip(header, row, strict=True)))

    def _jsonl(self, lines: Iterator[str]) -> Iterator[Record]:
        for line, content in enumerate(lines, start=1):
            if not content.strip():
                continue
            try:
                value = json.loads(content)
            except ValueError as exc:
                yield Record(line, {}, f"not valid JSON ({exc})")
                continue
            if not isinstance(value, dict):
                yield Record(line, {}, f"expected a JSON object, got {type(value).__name__}")
                continue
            yield Record(line, value)


def detect_encoding(sample: bytes) -> str:
    """BOM first, then strict UTF-8, then cp1252 (spreadsheet exports), then latin-1."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for encoding in ("utf-8", "cp1252"):
        try:
            codecs.getincrementaldecoder(encoding)().decode(sample, final=False)
        except UnicodeDecodeError:
            continue
        return encoding
    return "latin-1"


def detect_delimiter(first_lines: str) -> str:
    """csv.Sniffer restricted to , ; tab |, checked against the header; else the most frequent."""
    header = first_lines.splitlines()[0] if first_lines else ""
    with contextlib.suppress(csv.Error):
        found = csv.Sniffer().sniff(first_lines, delimiters=DELIMITERS).delimiter
        if found in header:
            return found
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def detect_format(path: Path, sample: str) -> Format:
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix in _CSV_SUFFIXES:
        return "csv"
    return "jsonl" if sample.lstrip().startswith("{") else "csv"


def open_source(
    path: Path,
    *,
    fmt: Format | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    display_name: str | None = None,
) -> Source:
    """Decide format, encoding and delimiter from the options or the file's first bytes."""
    name = display_name or str(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as raw:
            sample = raw.read(SNIFF_BYTES)
    except OSError as exc:
        raise SourceError(f"{name}: {exc.strerror or exc}") from None
    if encoding:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise SourceError(f"--encoding {encoding!r}: unknown encoding") from None
        if encoding == "utf-8" and sample.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
    else:
        encoding = detect_encoding(sample)
    text = _decode_sample(sample, encoding)
    fmt = fmt or detect_format(path, text)
    if delimiter is not None:
        delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
        if len(delimiter) != 1:
            raise SourceError(f"--delimiter {delimiter!r}: expected one character")
    elif fmt == "csv":
        delimiter = detect_delimiter(text[: 64 * 1024])
    return Source(path, fmt, encoding, delimiter or ",", size, name)


def _decode_sample(sample: bytes, encoding: str) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    return decoder.decode(sample, final=False)


def spool_stdin(directory: str | None = None, stream: BinaryIO | None = None) -> Path:
    """Copy stdin to a temporary file, so it can be validated and then sent (two passes)."""
    source = stream or sys.stdin.buffer
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the caller deletes it
        prefix="startproc-batch-stdin-", dir=directory, delete=False
    )
    with handle:
        shutil.copyfileobj(source, handle, 1024 * 1024)
    return Path(handle.name)
