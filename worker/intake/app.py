"""The intake's ASGI app: routes, token auth, size limits, problem+json everywhere.

``create_app`` does no I/O: connections open on first use, so the server
starts (and ``/healthz`` reports the outage) while Redis or the broker is
still coming up. It does refuse to build an app without tokens unless
``allow_anonymous`` is given -- an open intake would let anyone on the
network start processes in every configured engine.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from worker.config import Settings
from worker.errors import ConfigError
from worker.intake import batches, jobs, ops
from worker.intake.auth import BearerAuth, parse_entries
from worker.intake.context import Intake, Publisher
from worker.intake.docs import build_openapi
from worker.intake.middleware import BodyLimit, ProblemGuard
from worker.intake.params import reject_unknown_query
from worker.intake.problems import install_handlers
from worker.targets import Targets

BATCH_PATH = "/batches"
CONSOLE_PATH = "/ui"
CONSOLE_UPLOADS = CONSOLE_PATH + BATCH_PATH


def create_app(
    cfg: Settings,
    *,
    allow_anonymous: bool = False,
    publisher: Publisher | None = None,
    targets: Targets | None = None,
) -> FastAPI:
    """The intake for ``cfg``; ``publisher`` replaces the broker (for tests of the app alone).

    ``targets``: the targets file, already validated (``startproc serve`` loads it
    at start); by default it is read on the first request that needs it.
    """
    tokens = parse_entries(cfg.intake_tokens)
    if not tokens and not allow_anonymous:
        raise ConfigError(
            "STARTPROC_INTAKE_TOKENS is not set: the intake will not run without "
            "authentication (give --insecure-no-auth to run it open, on a trusted network only)"
        )
    app = FastAPI(
        title="process-start-worker intake",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.intake = Intake(cfg, publisher, targets)
    install_handlers(app)
    guarded = [
        Depends(BearerAuth(tokens, required=not allow_anonymous)),
        Depends(reject_unknown_query),
    ]
    app.include_router(jobs.router, dependencies=guarded)
    app.include_router(batches.router, dependencies=guarded)
    app.include_router(ops.router)
    if tokens:  # the console signs people in with the tokens: none, no console
        from worker.console import create_console

        app.mount(CONSOLE_PATH, create_console(cfg, app.state.intake))

    def limit_for(path: str) -> int:
        if path in (BATCH_PATH, CONSOLE_UPLOADS) or path.startswith(BATCH_PATH + "/"):
            return cfg.intake_max_batch_bytes
        return cfg.intake_max_body_bytes

    app.add_middleware(BodyLimit, limit_for=limit_for)
    app.add_middleware(ProblemGuard)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app
