"""structlog, configured once, writing its own lines; Celery's and the stdlib's records alike.

One JSON object per line; ``job_id``, ``target`` and ``attempt`` are bound as
context by the task, so every line a job causes can be found by its id, and
``trace_id``/``span_id`` are added inside a traced job (`worker.tracing.context`), so
a line leads to its trace and back.
Secrets never reach here: they live in `SecretStr` and auth providers only.

structlog renders and writes its lines itself, filtered by level in the bound
logger: a stdlib ``LogRecord``, handler and formatter per line were 8 % of a
start (issue 19). Records of stdlib loggers (Celery, uvicorn, ...) still go
through the root handler, whose formatter runs the same processors.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, TextIO

import structlog

from worker.tracing.context import add_trace_ids

_configured = False


class _StderrLogger(structlog.BytesLogger):
    """structlog's bytes logger, keeping two promises of the stdlib's handler on stderr.

    It writes under that handler's lock, so a line never interleaves with another,
    ours or the stdlib's (an unbuffered stderr, ``PYTHONUNBUFFERED`` as in the image,
    is one ``write(2)`` per call, and pipes mix concurrent writes over 4 KiB); logging
    re-creates that lock in a forked child. A write that fails (stderr closed, a
    broken pipe) loses the line, never the caller's job.
    """

    __slots__ = ()

    def __init__(self, file: BinaryIO, lock: threading.RLock, name: str | None) -> None:
        super().__init__(file, name=name)
        self._lock = lock  # type: ignore[assignment]  # typed Lock; any lock serves `with`

    def msg(self, message: bytes) -> None:
        try:  # noqa: SIM105 (contextlib.suppress costs a context manager per line)
            super().msg(message)
        except (OSError, ValueError):
            pass

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _Dumps:
    """``json.dumps`` as `JSONRenderer` calls it, with the encoder built once, not per line."""

    def __init__(self) -> None:
        self._encode: Callable[[Any], str] | None = None

    def __call__(self, obj: Any, **kw: Any) -> str:
        if self._encode is None:  # kw are the renderer's own, the same on every call
            self._encode = json.JSONEncoder(**kw).encode
        return self._encode(obj)


def _encoder(stream: TextIO) -> structlog.types.Processor:
    """The rendered line in the stream's own encoding, as the stdlib's handler writes it."""
    encoding, errors = stream.encoding or "utf-8", stream.errors or "strict"

    def encode(_logger: Any, _method: str, line: Any) -> bytes:
        return bytes(line, encoding, errors)

    return encode


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """structlog and stdlib logging: one format, one level (fixed from here on), on stderr."""
    global _configured
    if _configured:
        return
    _configured = True
    root = logging.getLogger()
    root.setLevel(level.upper())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,  # a stdlib record's name, or our logger's
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_Dumps())
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root.handlers[:] = [handler]
    stderr, lock = sys.stderr.buffer, handler.lock
    assert lock is not None  # a Handler makes its lock in __init__

    def logger(*args: Any) -> _StderrLogger:
        """Named as ``structlog.get_logger(name)`` says: the line's ``logger``."""
        return _StderrLogger(stderr, lock, args[0] if args else None)

    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer, _encoder(sys.stderr)],
        logger_factory=logger,
        wrapper_class=structlog.make_filtering_bound_logger(root.level),
        cache_logger_on_first_use=True,
    )
    for noisy in ("urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if root.level > logging.DEBUG:
        # Celery's per-task "received"/"succeeded" lines repeat `job.finished`
        # and cost measurable CPU per start; DEBUG brings them back.
        for chatty in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
