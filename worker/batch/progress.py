"""Progress of a batch, for people: rich bars on a terminal, nothing otherwise.

`submit` reports phases through the small `Progress` protocol, so the Python
API runs silent (`NullProgress`) and the CLI shows bars (`RichProgress`)
only when stderr is a terminal and ``--json`` is not given.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichBars
from rich.table import Column
from rich.text import Text


class Progress(Protocol):
    def start(self, phase: str, total: float | None) -> None:
        """Begin a phase: ``validate`` (total in bytes), ``enqueue`` or ``wait`` (rows)."""

    def update(self, completed: float, rows: int, note: str = "") -> None:
        """Where the current phase is; ``rows`` drives the rows/s figure."""

    def stop(self) -> None:
        """End the current phase."""


class NullProgress:
    def start(self, phase: str, total: float | None) -> None:
        pass

    def update(self, completed: float, rows: int, note: str = "") -> None:
        pass

    def stop(self) -> None:
        pass


class RowsPerSecond(ProgressColumn):
    """Rows per second, even when the bar itself counts bytes (validation)."""

    def render(self, task: Task) -> Text:
        rows = int(task.fields.get("rows", 0))
        elapsed = task.elapsed or 0.0
        rate = f"{rows / elapsed:,.0f}/s" if elapsed > 0.2 else "…/s"
        return Text(f"{rows:,} rows {rate}", style="progress.data.speed")


LABELS = {"validate": "validating", "enqueue": "enqueueing", "wait": "results"}


class RichProgress:
    """One bar per phase; finished bars stay on screen as a record of the run."""

    def __init__(self, console: Console) -> None:
        self._bars = RichBars(
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(bar_width=20),
            TaskProgressColumn(),
            RowsPerSecond(table_column=Column(no_wrap=True)),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn(
                "{task.fields[note]}", table_column=Column(no_wrap=True, overflow="ellipsis")
            ),
            console=console,
            refresh_per_second=8,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._bars.stop()

    def start(self, phase: str, total: float | None) -> None:
        self._task = self._bars.add_task(LABELS.get(phase, phase), total=total, rows=0, note="")

    def update(self, completed: float, rows: int, note: str = "") -> None:
        if self._task is not None:
            self._bars.update(self._task, completed=completed, rows=rows, note=note)

    def stop(self) -> None:
        if self._task is not None:
            self._bars.stop_task(self._task)
            self._task = None
