"""structlog, configured once, also formatting Celery's and the stdlib's records.

One JSON object per line; ``job_id``, ``target`` and ``attempt`` are bound as
context by the task, so every line a job causes can be found by its id, and
``trace_id``/``span_id`` are added inside a traced job (`worker.tracing.context`), so
a line leads to its trace and back.
Secrets never reach here: they live in `SecretStr` and auth providers only.
"""

from __future__ import annotations

import logging
import sys

import structlog

from worker.tracing.context import add_trace_ids

_configured = False


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Route structlog and stdlib logging through one renderer on stderr."""
    global _configured
    if _configured:
        return
    _configured = True
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if root.level > logging.DEBUG:
        # Celery's per-task "received"/"succeeded" lines repeat `job.finished`
        # and cost measurable CPU per start; DEBUG brings them back.
        for chatty in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
