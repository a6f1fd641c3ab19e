"""Assembles the ``startproc`` command tree."""

from __future__ import annotations

import typer

from worker.cli import batch, jobs, local, ops, schedules, serve
from worker.cli.common import EXIT_USAGE, err_console
from worker.errors import ConfigError

app = typer.Typer(
    name="startproc",
    help="Start business-process instances in workflow engines, reliably, from a queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(jobs.enqueue)
app.command()(jobs.status)
app.command()(jobs.results)
app.command()(local.up)
app.command()(local.demo)
app.command()(ops.sandbox)
app.command()(serve.serve)
app.add_typer(ops.targets_app, name="targets")
app.add_typer(ops.dlq_app, name="dlq")
app.add_typer(batch.batch_app, name="batch")
app.add_typer(schedules.schedules_app, name="schedules")


def run() -> None:
    from worker.config import settings
    from worker.logs import configure

    try:
        cfg = settings()
        configure(cfg.log_level if cfg.log_level != "INFO" else "WARNING", cfg.log_format)
    except ConfigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise SystemExit(EXIT_USAGE) from None
    app()
