"""Assembles the ``startproc`` command tree.

Importing this module must stay cheap (``startproc --help`` in a fraction of
a second): the command modules import typer and rich only, and the root
callback, which runs before a command but not for ``--help``, sets up
logging from the settings.
"""

from __future__ import annotations

import typer

from worker.cli import batch, health, jobs, local, ops, schedules, serve
from worker.cli.common import Commands, WaitCommand

app = typer.Typer(
    name="startproc",
    cls=Commands,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command(cls=WaitCommand)(jobs.enqueue)
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
app.add_typer(health.health_app, name="health")


def _print_version(value: bool) -> None:
    if value:
        from worker import __version__

        typer.echo(f"startproc {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
    traceback: bool = typer.Option(
        False,
        "--traceback",
        help="With an error message, also print the traceback (for bug reports).",
    ),
) -> None:
    """Start business-process instances in workflow engines, reliably, from a queue.

    \b
    Exit codes: 0 ok (created/duplicate), 1 failed, or Redis/the broker unreachable,
    2 usage or configuration error, 3 --wait ran out, 4 unknown job id or batch.
    Every command has --help and --json.
    """
    from worker.cli.common import fail
    from worker.config import settings
    from worker.errors import ConfigError
    from worker.logs import configure
    from worker.tracing import context as tracing

    try:
        cfg = settings()
    except ConfigError:
        configure("WARNING", "console")  # the command that reads the settings says what is wrong
        return
    # The intake logs at STARTPROC_LOG_LEVEL; other commands stay quiet below WARNING
    # (the level is fixed here: structlog filters in its bound loggers).
    serving = ctx.invoked_subcommand == "serve"
    level = cfg.log_level if serving or cfg.log_level != "INFO" else "WARNING"
    configure(level, cfg.log_format)
    try:  # exporting only when OTEL_* / STARTPROC_TRACES_FILE ask for it
        tracing.configure(
            "startproc-intake" if ctx.invoked_subcommand == "serve" else "startproc-cli"
        )
    except ConfigError as exc:
        fail(str(exc))


def run() -> None:
    app()
