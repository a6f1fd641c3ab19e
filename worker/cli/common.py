"""What every command shares: settings, one place for errors, JSON or rich output, exit codes.

Exit codes (README "Start jobs"; CONTRACT sections 5 and 6): 0 success
(created/duplicate), 1 a failed job or an operational failure (Redis or the
broker unreachable), 2 usage or configuration errors, 3 a ``--wait`` that
ran out before the result arrived, 4 a job id nobody ever enqueued.

**Errors.** A command never prints a traceback. It calls `fail` for what it
detects itself, and everything else it raises -- `ConfigError`, a Redis or
broker error, anything unexpected -- reaches `Commands.invoke`, the root
group's, which prints one line through `explain` and exits with the
documented code (``startproc --traceback …`` adds the traceback, for bug
reports). Every message is printed as plain text, never as rich markup, so
``[a-z0-9]`` or ``[bold]12`` in a message reach the screen whole.

**Start-up time.** ``startproc --help`` imports this module and typer only:
everything heavy (settings, pydantic, redis, kombu, structlog) is imported
inside the functions that need it.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from collections.abc import Collection

    from rich.table import Table

    from worker.config import Settings
    from worker.models import Result
    from worker.targets import Targets

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PENDING, EXIT_UNKNOWN = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
# A Redis or broker that does not answer within this many seconds is reported as down.
PROBE_TIMEOUT = 1.5
REDIS_SCHEMES = ("redis", "rediss", "unix")
# emoji=False: ":smile:" in a variable is printed as typed; highlight=False: no guessing colours.
console = Console(emoji=False, highlight=False)
err_console = Console(stderr=True, emoji=False, highlight=False, soft_wrap=True)

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


class CliError(Exception):
    """A problem the command has put into words: printed as one line, exit ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def print_error(message: str) -> None:
    """``error: …`` on stderr, every character as given (no markup, no emoji, no wrapping)."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", message))


def print_warning(message: str) -> None:
    err_console.print(Text.assemble(("warning:", "yellow"), " ", message))


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    raise CliError(message, code)


def plain(value: object) -> Text:
    """A table cell or line that rich prints as it is (``[x]`` stays ``[x]``)."""
    return Text("" if value is None else str(value))


# ---------------------------------------------------------------- errors in one place


def _known_url(kind: str) -> str | None:
    """The configured URL an error is about, for the message (never raises)."""
    try:
        from worker.config import settings

        cfg = settings()
        url = cfg.effective_redis_url() if kind == "redis" else cfg.broker_url
    except Exception:
        return None
    return redact(url) if url else None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300].rstrip(".")


def explain(exc: BaseException) -> tuple[str, int]:
    """One line naming what failed and what to do, and the exit code, for any exception."""
    from worker.errors import ConfigError, InvalidJob

    if isinstance(exc, CliError):
        return exc.message, exc.code
    if isinstance(exc, ConfigError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, InvalidJob):
        return exc.message, EXIT_USAGE
    redis = sys.modules.get("redis")
    if redis is not None and isinstance(exc, redis.RedisError):
        where = _known_url("redis") or "Redis"
        if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            return unreachable("Redis", where, exc), EXIT_FAILED
        return f"Redis at {where}: {_reason(exc)}", EXIT_FAILED
    broker_errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    for module, name in (("kombu.exceptions", "KombuError"), ("amqp.exceptions", "AMQPError")):
        if module in sys.modules:
            broker_errors += (getattr(sys.modules[module], name),)
    if isinstance(exc, broker_errors):
        return unreachable("the broker", _known_url("broker") or "?", exc), EXIT_FAILED
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or _reason(exc)}", EXIT_FAILED
    return (
        f"unexpected {type(exc).__name__}: {_reason(exc)} "
        "(`startproc --traceback …` shows where; please report it)",
        EXIT_FAILED,
    )


def unreachable(what: str, url: str, exc: BaseException | str) -> str:
    reason = exc if isinstance(exc, str) else _reason(exc)
    return (
        f"{what} at {url} is unreachable ({reason}): start it, or set STARTPROC_BROKER_URL / "
        "STARTPROC_REDIS_URL to one that runs (`startproc up` prints the URL to export)"
    )


class Commands(TyperGroup):
    """The root group: turns whatever a command raises into `explain`'s line and exit code."""

    # ``Any``: typer >= 0.25 vendors click, and the context type moved with it.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.exceptions.TyperException):
            raise  # click's own: usage errors, exits, Ctrl-C at a prompt
        except KeyboardInterrupt:
            print_error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:
            message, code = explain(exc)
            print_error(message)
            if ctx.params.get("traceback"):
                traceback.print_exception(exc, file=sys.stderr)
            raise typer.Exit(code) from None


def with_wait_value(args: list[str]) -> list[str]:
    """``--wait`` followed by no number means "until the result is there" (no limit)."""
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


class WaitCommand(TyperCommand):
    """A command whose ``--wait`` may stand alone (no limit) or take SECONDS."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, with_wait_value(args))


WAIT_HELP = (
    "Wait for the result, up to SECONDS (bare --wait: no limit); "
    "exit 0 created/duplicate, 1 failed, 3 still pending."
)


# ---------------------------------------------------------------- settings, Redis, broker


def current_settings() -> Settings:
    """The settings (a bad variable is a `ConfigError`: exit 2 with the variable named)."""
    from worker.config import settings

    return settings()


def redact(url: str) -> str:
    """A URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        user = parts.username or ""
        netloc = f"{user}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def ping_redis(url: str, what: str = "Redis") -> None:
    """Fail within `PROBE_TIMEOUT` seconds, in one line, when the Redis at ``url`` is down.

    The clients the commands then use retry a dropped connection for several
    seconds (right for a blip in a long run, wrong for a first contact).
    """
    import redis

    from worker.broker.connections import redis_client

    if urlsplit(url).scheme not in (*REDIS_SCHEMES, "sentinel"):
        return
    client = redis_client(url, probe=True)  # sentinel://: asks the sentinels for the master
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        fail(unreachable(what, redact(url), exc), EXIT_FAILED)
    except redis.RedisError as exc:
        fail(f"{what} at {redact(url)}: {_reason(exc)}", EXIT_FAILED)
    finally:
        client.close()


def need_redis(cfg: Settings) -> str:
    """The ledger/results Redis URL, checked to answer."""
    url = cfg.require_redis()
    ping_redis(url)
    return url


def need_broker(cfg: Settings) -> str:
    """The broker URL, checked to answer (a Redis broker that is the ledger's is pinged once)."""
    url = cfg.require_broker()
    scheme = urlsplit(url).scheme
    if scheme in (*REDIS_SCHEMES, "sentinel"):
        if url != cfg.effective_redis_url():
            ping_redis(url, "the broker (Redis)")
        return url
    if scheme in ("amqp", "amqps", "pyamqp"):
        from kombu.connection import Connection
        from kombu.exceptions import OperationalError

        kombu_connection: Any = Connection  # kombu has no annotations
        with kombu_connection(url, connect_timeout=PROBE_TIMEOUT) as conn:
            try:
                conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
            except (OperationalError, OSError) as exc:
                fail(unreachable("the broker", redact(url), exc), EXIT_FAILED)
    return url


def need_producer(cfg: Settings) -> str:
    """What sending a job needs, checked to answer: the broker, and Redis when there is one
    (our producers note each job there first). Returns the broker URL."""
    url = need_broker(cfg)
    if cfg.effective_redis_url():
        need_redis(cfg)
    return url


def load_targets_for(cfg: Settings, need: Collection[str] = ()) -> Targets:
    """The whole targets file, validated; ``${VAR}``s resolved only for the targets in ``need``."""
    from worker.targets import Targets

    return Targets.load(cfg.targets, need=need)


def check_target(targets: Targets, name: str, option: str = "--target") -> None:
    """Exit 2 unless the targets file declares ``name``, with a suggestion."""
    problem = targets.unknown(name)
    if problem:
        fail(f"{option}: {problem}")


# ---------------------------------------------------------------- output


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str, indent=None) + "\n")


def iso_time(seconds: float | None) -> str | None:
    """A Unix time as the results' timestamp format, ``2026-11-25T10:00:00.042Z``."""
    from datetime import UTC, datetime

    from worker.models import iso_ms

    return None if seconds is None else iso_ms(datetime.fromtimestamp(seconds, UTC))


def result_exit_code(result: Result | None) -> int:
    if result is None:
        return EXIT_PENDING
    return EXIT_OK if result.ok else EXIT_FAILED


def results_table(results: list[Result], title: str | None = None) -> Table:
    """Results, one per row, with whole job ids (what ``startproc status`` takes)."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("job", no_wrap=True, min_width=8)
    for column in ("target", "engine", "status"):
        table.add_column(column, no_wrap=True)
    for column in ("process", "instance", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"created": "green", "duplicate": "cyan", "failed": "red"}
    for r in results:
        detail = f"{r.error.kind}: {r.error.message}" if r.error else f"attempts={r.attempts}"
        table.add_row(
            plain(r.job_id),
            plain(r.target),
            plain(r.engine),
            Text(r.status, style=colours[r.status]),
            plain(r.process),
            plain(r.instance_id),
            plain(detail),
        )
    return table
