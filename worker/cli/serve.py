"""``startproc serve``: the HTTP intake on uvicorn.

One uvicorn process, async routes, blocking broker/Redis calls in its thread
pool. Run several behind a load balancer for more throughput or
availability: the intake keeps no state of its own.
"""

from __future__ import annotations

import sys

import typer

from worker.cli.common import (
    EXIT_FAILED,
    JsonOption,
    console,
    current_settings,
    emit_json,
    err_console,
    fail,
    plain,
    print_warning,
)

INSECURE_BANNER = (
    "[bold red]WARNING: the intake is running WITHOUT AUTHENTICATION "
    "(--insecure-no-auth).[/] Anyone who can reach {url} can start processes "
    "in every configured engine. Set STARTPROC_INTAKE_TOKENS for anything but a "
    "trusted local network."
)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def serve(
    host: str = typer.Option(
        "127.0.0.1", "--host", metavar="ADDRESS", help="Address to listen on."
    ),
    port: int = typer.Option(
        8080, "--port", min=0, max=65535, metavar="PORT", help="Port (0: any free one)."
    ),
    insecure_no_auth: bool = typer.Option(
        False,
        "--insecure-no-auth",
        help="Run without STARTPROC_INTAKE_TOKENS: no authentication at all.",
    ),
    print_openapi: bool = typer.Option(
        False, "--print-openapi", help="Print the OpenAPI document (docs/openapi.json) and exit."
    ),
    log_level: str = typer.Option(
        "info",
        "--log-level",
        metavar="LEVEL",
        help="Level of uvicorn's own lines (startup, requests): "
        "critical, error, warning, info, debug, trace. They are formatted like every other "
        "log line (STARTPROC_LOG_FORMAT).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Serve the HTTP intake (POST /jobs, GET /jobs/{id}, POST /batches, /healthz, /metrics)
    and the operator console (/ui/, sign in with a token).

    Refuses to start without STARTPROC_INTAKE_TOKENS unless --insecure-no-auth
    is given (then without the console). With --json, prints {"url": …, "auth": …,
    "console": …} once listening.
    """
    from worker.intake import create_app, openapi_text
    from worker.intake.auth import SHORT_TOKEN, parse_tokens
    from worker.intake.context import intake_of_app
    from worker.intake.server import bind, server_for, url_of

    if print_openapi:
        from worker.config import Settings

        # Defaults, not the environment: the document must not depend on where it was printed.
        sys.stdout.write(openapi_text(create_app(Settings.model_construct(), allow_anonymous=True)))
        return
    if log_level.lower() not in LOG_LEVELS:
        fail(f"--log-level {log_level!r}: one of {', '.join(LOG_LEVELS)}")
    cfg = current_settings()
    app = create_app(cfg, allow_anonymous=insecure_no_auth)
    # The whole targets file, checked now (its ${VAR}s need not be set here): POST /jobs
    # refuses a job naming a target the file does not declare.
    intake_of_app(app).targets()
    from worker.broker.redis_policy import check_settings

    check_settings(cfg)  # the intake is a producer: an evicting Redis is refused at start
    try:
        sock = bind(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_FAILED)
    url = url_of(sock)
    tokens = parse_tokens(cfg.intake_tokens)
    if not tokens:
        from rich.markup import escape

        err_console.print(INSECURE_BANNER.format(url=escape(url)))
    elif any(len(token) < SHORT_TOKEN for token in tokens):
        print_warning(
            f"an intake token is shorter than {SHORT_TOKEN} bytes; "
            "use long random ones (python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    # The operator console comes with the tokens (people sign in with them): none, no console.
    ui = f"{url}/ui/" if tokens else None
    if as_json:
        emit_json({"url": url, "auth": bool(tokens), "console": ui})
    else:
        console.print(plain(f"intake listening on {url} (auth: {'bearer' if tokens else 'NONE'})"))
        if ui:
            console.print(plain(f"operator console: {ui}"))
    sys.stdout.flush()
    server_for(app, log_level.lower()).run(sockets=[sock])

