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
from rich.markup import escape
from typer.core import TyperGroup

from worker.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNKNOWN,
    JsonOption,
    WaitCommand,
    check_target,
    console,
    current_settings,
    emit_json,
    err_console,
    fail,
    load_targets_for,
    need_broker,
    need_redis,
    plain,
    print_error,
    with_wait_value,
)

if TYPE_CHECKING:
    from worker.batch.source import Format

DEFAULT_COMMAND = "submit"
SHOWN_ERRORS = 20


_with_wait_value = with_wait_value  # ``batch FILE --wait``: no limit


class BatchGroup(TyperGroup):
    """Routes ``batch FILE …`` to the default ``submit`` subcommand."""

    default_command = DEFAULT_COMMAND

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


@batch_app.command(DEFAULT_COMMAND, cls=WaitCommand)
def submit(
    file: str = typer.Argument(
        ..., metavar="FILE", help="CSV or JSONL file; - reads stdin (needs --batch-id)."
    ),
    target: str = typer.Option(
        ..., "--target", "-t", metavar="NAME", help="Target name from the targets file."
    ),
    process: str = typer.Option(
        ..., "--process", "-p", metavar="ID", help="The engine's process identifier."
    ),
    map_: list[str] = typer.Option(
        [],
        "--map",
        "-m",
        metavar="COLUMN[=VARIABLE][:TYPE]",
        help="COLUMN[=VARIABLE][:TYPE] (repeatable); only mapped columns are sent.",
    ),
    mapping: Path | None = typer.Option(
        None, "--mapping", metavar="FILE", help="TOML mapping file."
    ),
    business_key: str | None = typer.Option(
        None, "--business-key", metavar="COLUMN", help="Business key column."
    ),
    batch_id: str | None = typer.Option(
        None, "--batch-id", metavar="ID", help="Batch name (default: FILE-NAME:TARGET:PROCESS)."
    ),
    delimiter: str | None = typer.Option(
        None, "--delimiter", metavar="CHAR", help="CSV delimiter (default: sniffed)."
    ),
    encoding: str | None = typer.Option(
        None,
        "--encoding",
        metavar="NAME",
        help="File encoding (default: sniffed; UTF-8 BOM handled).",
    ),
    fmt: str | None = typer.Option(
        None,
        "--format",
        metavar="csv|jsonl",
        help="csv or jsonl (default: from the name or content).",
    ),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Send the valid rows even if some are invalid."
    ),
    rejects: Path | None = typer.Option(
        None,
        "--rejects",
        metavar="FILE",
        help="Write invalid rows here (with --skip-invalid, default: FILE.rejects.csv).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and summarise; send nothing."),
    wait: float | None = typer.Option(
        None,
        "--wait",
        min=0,
        metavar="[SECONDS]",
        help="Wait for every row's result, up to SECONDS (bare --wait: no limit).",
    ),
    report: Path | None = typer.Option(
        None, "--report", metavar="FILE", help="Per-row report: out.csv or out.jsonl."
    ),
    chunk: int = typer.Option(
        1000, "--chunk", min=1, metavar="ROWS", help="Rows per published chunk."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Validate FILE, then start one instance per valid row (re-running starts nothing twice).

    Exit codes: 0 sent (with --wait: all created/duplicate), 1 failed rows or
    interrupted, 2 invalid rows (nothing sent) or usage, 3 --wait ran out.
    """
    from worker import batch
    from worker.batch.progress import NullProgress, Progress, RichProgress

    if fmt is not None and fmt not in ("csv", "jsonl"):
        fail(f"--format {fmt!r}: csv or jsonl")
    cfg = current_settings()
    targets = load_targets_for(cfg, need={target})  # the whole file; only this target's secrets
    check_target(targets, target)
    if not dry_run:
        need_broker(cfg)
        need_redis(cfg)
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
            summary = batch.submit(file, options, progress=bars, settings=cfg, targets=targets)
    except batch.BatchError as exc:
        fail(str(exc), EXIT_FAILED)
    except batch.BatchInterrupted as stop:
        _print(stop.summary, as_json)
        raise typer.Exit(EXIT_FAILED) from None
    _print(summary, as_json)
    raise typer.Exit(summary.exit_code)


@batch_app.command("status")
def status(
    batch_id: str = typer.Argument(..., metavar="BATCH_ID", help="The batch id a submit printed."),
    as_json: bool = JsonOption,
) -> None:
    """Counts of a batch from the results index (created / duplicate / failed / pending).

    Exit 4 when the results index knows no batch of that id.
    """
    from worker import batch

    cfg = current_settings()
    need_redis(cfg)
    state = batch.status(batch_id, cfg)
    if not state.known:
        if as_json:
            emit_json({"batch_id": batch_id, "status": "unknown"})
        else:
            print_error(
                f"unknown batch {batch_id!r}: no row of it has a result (yet), and no submit of "
                "it was recorded; the id is FILE-NAME:TARGET:PROCESS unless --batch-id was given"
            )
        raise typer.Exit(EXIT_UNKNOWN)
    if as_json:
        emit_json(state.to_dict())
    else:
        from rich.table import Table

        table = Table(title=plain(f"batch {batch_id}"), show_header=False)
        for name in ("created", "duplicate", "failed", "pending", "expected"):
            value = getattr(state, name)
            table.add_row(name, "?" if value is None else f"{value:,}")
        for name, value in state.meta.items():
            table.add_row(plain(name), plain(value))
        console.print(table)
    raise typer.Exit(EXIT_OK)


def _print(summary: Any, as_json: bool) -> None:
    """The summary on stderr (the batch id alone on stdout); every value escaped."""
    if as_json:
        emit_json(summary.to_dict())
        return
    from rich.table import Table

    s = summary
    out = err_console
    e = escape  # file names, columns, reasons and batch ids are text from the user
    delimiter = f", delimiter {e(repr(s.delimiter))})" if s.delimiter else ")"
    out.print(
        f"[bold]{e(str(s.source))}[/]: {s.rows:,} rows, [green]{s.valid:,} valid[/], "
        f"{'[red]' if s.invalid else ''}{s.invalid:,} invalid{'[/]' if s.invalid else ''} "
        f"({e(str(s.format))}, {e(str(s.encoding))}{delimiter}"
    )
    if s.errors:
        table = Table("line", "column", "reason", title="invalid rows", title_justify="left")
        for error in s.errors[:SHOWN_ERRORS]:
            table.add_row(str(error.line), plain(error.column), plain(error.reason))
        out.print(table)
        more = s.invalid - min(len(s.errors), SHOWN_ERRORS)
        if more > 0:
            where = (
                f" in {s.rejects_path}" if s.rejects_path else " (write them with --rejects FILE)"
            )
            out.print(plain(f"… {more:,} more invalid rows{where}"))
    if s.rejects_path:
        out.print(plain(f"rejects written to {s.rejects_path}"))
    if s.dry_run:
        out.print("dry run: nothing was sent")
    elif s.invalid and not s.skip_invalid:
        out.print(
            "[red]nothing was sent:[/] fix the rows, or send the valid ones with --skip-invalid"
        )
    else:
        out.print(
            f"batch [bold]{e(s.batch_id)}[/]: {s.enqueued:,} sent, {s.already_done:,} already done"
        )
    if s.waited:
        out.print(
            f"results: [green]{s.created:,} created[/], [cyan]{s.duplicate:,} duplicate[/], "
            f"[red]{s.failed:,} failed[/], {s.pending:,} pending"
        )
    if s.report_path:
        out.print(plain(f"report written to {s.report_path}"))
    if s.interrupted and s.phase in ("wait", "report"):
        out.print(
            "[yellow]interrupted:[/] every row was sent; the workers carry on "
            f"(startproc batch status {e(repr(s.batch_id))})"
        )
    elif s.interrupted:
        out.print(
            f"[yellow]interrupted while {e(str(s.phase))}:[/] run the same command again to "
            "continue (rows already started are not started twice)"
        )
    elif not s.sent_nothing:
        out.print(plain(f"progress: startproc batch status {s.batch_id!r}"))
    if not s.sent_nothing:
        console.print(plain(s.batch_id), soft_wrap=True)
