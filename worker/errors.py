"""The one error hierarchy of process-start-worker.

Every failure a start job can meet ends up as exactly one of these, and the
class decides what happens next (retry, fail, reconcile)::

    StartprocError
    ├── ConfigError          bad targets file / environment: fails at start-up
    ├── SettleError          a dead letter cannot be settled as asked (`worker.delivery.settle`)
    └── JobError             something went wrong with one job
        ├── InvalidJob       the job itself is malformed           -> failed, kind "invalid"
        ├── PermanentError   the engine refused; retrying won't help -> failed, kind "permanent"
        ├── ConflictError    same key, other payload; or the engine  -> failed, kind "conflict"
        │                    holds the business id for another instance (its id kept)
        ├── TransientError   try again later (refused, 408)         -> retry; then kind "exhausted"
        │   └── Backpressure 429, 503, RESOURCE_EXHAUSTED: also slows the target's shared rate
        └── AmbiguousError   the instance may exist (sent, no answer) -> reconcile first

Engine and transport errors are translated into this tree at one boundary
(`worker.engines.base.classify_http` and `Engine.send`), with ``raise … from``
so the original stays in the traceback but never in results or logs.
"""

from __future__ import annotations

from typing import Any, ClassVar


class StartprocError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(StartprocError):
    """Configuration cannot be used; raised at start-up, never at the first job."""


class SettleError(StartprocError):
    """A dead letter cannot be replayed or resolved as asked; the message says what to do."""


class JobError(StartprocError):
    """A failure of one job. ``kind`` is what the result's ``error.kind`` says."""

    kind: ClassVar[str] = "permanent"

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        engine_error: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.engine_error = engine_error

    def as_error_info(self) -> dict[str, Any]:
        """The ``error`` object of a result (CONTRACT section 4)."""
        return {
            "kind": self.kind,
            "http_status": self.http_status,
            "message": self.message,
            "engine_error": self.engine_error,
        }


class InvalidJob(JobError):
    """The job is malformed: a field is missing, of the wrong type, or unknown."""

    kind = "invalid"


class PermanentError(JobError):
    """The engine said no in a way that will not change on retry (400, 403, 404, 409)."""

    kind = "permanent"


class ConflictError(JobError):
    """The idempotency key was already used with a different payload, or the engine
    refused the start because another instance holds its business id."""

    kind = "conflict"

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        engine_error: Any = None,
        existing_instance_id: str | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, engine_error=engine_error)
        self.existing_instance_id = existing_instance_id

    def as_error_info(self) -> dict[str, Any]:
        info = super().as_error_info()
        if self.existing_instance_id is not None:
            info["existing_instance_id"] = self.existing_instance_id
        return info


class TransientError(JobError):
    """Nothing was created and trying later can succeed (backpressure, refused connection)."""

    kind = "exhausted"

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        engine_error: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, engine_error=engine_error)
        self.retry_after = retry_after


class Backpressure(TransientError):
    """The engine is overloaded (429, 503, C8 ``RESOURCE_EXHAUSTED``): slow down, then retry."""


class AmbiguousError(JobError):
    """The request may have created an instance (timeout after send, 502/504, dropped reply)."""

    kind = "ambiguous"


class AuthenticationError(PermanentError):
    """Credentials were rejected; raised after one refresh-and-retry did not help."""


class TokenExpired(TransientError):
    """The engine answered 401 to a cached token: refresh once and resend."""
