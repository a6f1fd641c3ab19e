"""What every command shares: settings with a clear error, JSON or rich output, exit codes.

Exit codes (CONTRACT section 5): 0 success (created/duplicate), 1 a failed
job or an operational failure, 2 usage or configuration errors, 3 a
``--wait`` that ran out before the result arrived.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console
from rich.table import Table

from worker.config import Settings, settings
from worker.errors import ConfigError
from worker.models import Result

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PENDING = 0, 1, 2, 3
console = Console()
err_console = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def current_settings() -> Settings:
    try:
        return settings()
    except ConfigError as exc:
        fail(str(exc))


def redact(url: str) -> str:
    """A URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str, indent=None) + "\n")


def result_exit_code(result: Result | None) -> int:
    if result is None:
        return EXIT_PENDING
    return EXIT_OK if result.ok else EXIT_FAILED


def results_table(results: list[Result], title: str | None = None) -> Table:
    table = Table(title=title)
    for column in ("job", "target", "engine", "status"):
        table.add_column(column, no_wrap=True)
    for column in ("process", "instance", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"created": "green", "duplicate": "cyan", "failed": "red"}
    for r in results:
        detail = f"{r.error.kind}: {r.error.message}" if r.error else f"attempts={r.attempts}"
        table.add_row(
            r.job_id[:8],
            r.target or "",
            r.engine or "",
            f"[{colours[r.status]}]{r.status}[/]",
            r.process or "",
            r.instance_id or "",
            detail,
        )
    return table
