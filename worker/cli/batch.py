"""``startproc batch FILE …`` and ``startproc batch status BATCH_ID``.

Both live in one typer group. Click cannot give a group a positional
argument *and* subcommands, so `BatchGroup` routes anything that is not a
subcommand name to the default ``submit``: ``batch FILE`` is
``batch submit FILE``. (A file literally named ``status`` needs ``./status``.)
It also lets ``--wait`` stand alone ("no limit") or take SECONDS.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer
from rich.table import Table
from typer.core import TyperGroup

from worker.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    JsonOption,
    console,
    current_settings,
    emit_json,
    err_console,
    fail,
)
from worker.errors import ConfigError

if TYPE_CHECKING:
    from worker.batch_source import Format

DEFAULT_COMMAND = "submit"
SHOWN_ERRORS = 20


def _with_wait_value(args: list[str]) -> list[str]:
    """``--wait`` followed by no number means "until every row has a result"."""
    out: list[str] = []
    for index, arg in enumerate(args):
        out.append(arg)
        if arg == "--wait":
            following = args[index + 1] if index + 1 < len(args) else ""
            try:
                float(following)
            except ValueError:
                out.append("inf")
    return out


class BatchGroup(TyperGroup):
    """Routes ``batch FILE …`` to the default ``submit`` subcommand."""

    # ``Any``: typer >= 0.25 vendors click, and the context type moved with it.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        first = args[0] if args else None
        if first is not None and first not in self.commands and first not in ctx.help_option_names:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, _with_wait_value(args))

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        formatter.write_usage(ctx.command_path, "FILE --target T --process P [OPTIONS] | status ID")


batch_app = typer.Typer(
    cls=BatchGroup,
    no_args_is_help=True,
    help="Start one instance per row of a CSV/JSONL file: validated first, sent once.",
)


@batch_app.command(DEFAULT_COMMAND)
def submit(
    file: str = typer.Argument(..., help="CSV or JSONL file; - reads stdin (needs --batch-id)."),
    target: str = typer.Option(..., "--target", "-t", help="Configured target name."),
    process: str = typer.Option(..., "--process", "-p", help="The engine's process identifier."),
    map_: list[str] = typer.Option(
        [],
        "--map",
        "-m",
        help="COLUMN[=VARIABLE][:TYPE] (repeatable); only mapped columns are sent.",
    ),
    mapping: Path | None = typer.Option(None, "--mapping", help="TOML mapping file."),
    business_key: str | None = typer.Option(None, "--business-key", help="Business key column."),
    batch_id: str | None = typer.Option(
        None, "--batch-id", help="Batch name (default: FILE-NAME:TARGET:PROCESS)."
    ),
    delimiter: str | None = typer.Option(
        None, "--delimiter", help="CSV delimiter (default: sniffed)."
    ),
    encoding: str | None = typer.Option(
        None, "--encoding", help="File encoding (default: sniffed; UTF-8 BOM handled)."
    ),
    fmt: str | None = typer.Option(
        None, "--format", help="csv or jsonl (default: from the name or content)."
    ),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Send the valid rows even if some are invalid."
    ),
    rejects: Path | None = typer.Option(
        None,
        "--rejects",
        help="Write invalid rows here (with --skip-invalid, default: FILE.rejects.csv).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and summarise; send nothing."),
    wait: float | None = typer.Option(
        None,
        "--wait",
        min=0,
        help="Wait for every row's result, up to SECONDS (bare --wait: no limit).",
    ),
    report: Path | None = typer.Option(
        None, "--report", help="Per-row report: out.csv or out.jsonl."
    ),
    chunk: int = typer.Option(1000, "--chunk", min=1, help="Rows per published chunk."),
    as_json: bool = JsonOption,
) -> None:
    """Validate FILE, then start one instance per valid row (re-running starts nothing twice).

    Exit codes: 0 sent (with --wait: all created/duplicate), 1 failed rows or
    interrupted, 2 invalid rows (nothing sent) or usage, 3 --wait ran out.
    """
    from worker import batch
    from worker.batch_progress import NullProgress, Progress, RichProgress

    if fmt is not None and fmt not in ("csv", "jsonl"):
        fail(f"--format {fmt!r}: csv or jsonl")
    cfg = current_settings()
    show = not as_json and err_console.is_terminal
    bars: Progress = RichProgress(err_console) if show else NullProgress()
    options = batch.BatchOptions(
        target=target,
        process=process,
        mapping=mapping,
        maps=map_,
        business_key=business_key,
        batch_id=batch_id,
        fmt=cast("Format | None", fmt),  # checked above
        delimiter=delimiter,
        encoding=encoding,
        skip_invalid=skip_invalid,
        rejects=rejects,
        dry_run=dry_run,
        wait=wait,
        report=report,
        chunk=chunk,
    )
    try:
        with bars if isinstance(bars, RichProgress) else contextlib.nullcontext():
            summary = batch.submit(file, options, progress=bars, settings=cfg)
    except ConfigError as exc:
        fail(str(exc))
    except batch.BatchError as exc:
        fail(str(exc), EXIT_FAILED)
    except batch.BatchInterrupted as stop:
        _print(stop.summary, as_json)
        raise typer.Exit(EXIT_FAILED) from None
    _print(summary, as_json)
    raise typer.Exit(summary.exit_code)


@batch_app.command("status")
def status(
    batch_id: str = typer.Argument(..., help="The batch id a submit printed."),
    as_json: bool = JsonOption,
) -> None:
    """Counts of a batch from the results index (created / duplicate / failed / pending)."""
    from worker import batch

    try:
        state = batch.status(batch_id, current_settings())
    except ConfigError as exc:
        fail(str(exc))
    if as_json:
        emit_json(state.to_dict())
    else:
        table = Table(title=f"batch {batch_id}", show_header=False)
        for name in ("created", "duplicate", "failed", "pending", "expected"):
            value = getattr(state, name)
            table.add_row(name, "?" if value is None else f"{value:,}")
        for name, value in state.meta.items():
            table.add_row(name, value)
        console.print(table)
    if not state.known:
        err_console.print(f"no batch {batch_id!r} in the results index", highlight=False)
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(EXIT_OK)


def _print(summary: Any, as_json: bool) -> None:
    if as_json:
        emit_json(summary.to_dict())
        return
    s = summary
    out = err_console
    out.print(
        f"[bold]{s.source}[/]: {s.rows:,} rows, [green]{s.valid:,} valid[/], "
        f"{'[red]' if s.invalid else ''}{s.invalid:,} invalid{'[/]' if s.invalid else ''} "
        f"({s.format}, {s.encoding}" + (f", delimiter {s.delimiter!r})" if s.delimiter else ")"),
        highlight=False,
    )
    if s.errors:
        table = Table("line", "column", "reason", title="invalid rows", title_justify="left")
        for error in s.errors[:SHOWN_ERRORS]:
            table.add_row(str(error.line), error.column, error.reason)
        out.print(table)
        more = s.invalid - min(len(s.errors), SHOWN_ERRORS)
        if more > 0:
            where = (
                f" in {s.rejects_path}" if s.rejects_path else " (write them with --rejects FILE)"
            )
            out.print(f"… {more:,} more invalid rows{where}", highlight=False)
    if s.rejects_path:
        out.print(f"rejects written to {s.rejects_path}", highlight=False)
    if s.dry_run:
        out.print("dry run: nothing was sent", highlight=False)
    elif s.invalid and not s.skip_invalid:
        out.print(
            "[red]nothing was sent:[/] fix the rows, or send the valid ones with --skip-invalid"
        )
    else:
        out.print(
            f"batch [bold]{s.batch_id}[/]: {s.enqueued:,} sent, {s.already_done:,} already done",
            highlight=False,
        )
    if s.waited:
        out.print(
            f"results: [green]{s.created:,} created[/], [cyan]{s.duplicate:,} duplicate[/], "
            f"[red]{s.failed:,} failed[/], {s.pending:,} pending"
        )
    if s.report_path:
        out.print(f"report written to {s.report_path}", highlight=False)
    if s.interrupted and s.phase in ("wait", "report"):
        out.print(
            "[yellow]interrupted:[/] every row was sent; the workers carry on "
            f"(startproc batch status '{s.batch_id}')",
            highlight=False,
        )
    elif s.interrupted:
        out.print(
            f"[yellow]interrupted while {s.phase}:[/] run the same command again to continue "
            "(rows already started are not started twice)"
        )
    elif not s.sent_nothing:
        out.print(f"progress: startproc batch status '{s.batch_id}'", highlight=False)
    if not s.sent_nothing:
        console.print(s.batch_id, highlight=False, soft_wrap=True)
