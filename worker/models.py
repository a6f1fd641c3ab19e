"""The two messages of the external contract: a start job and its result.

Both are frozen and validate every field, because a job comes from any app
over a queue and a result is read by apps we do not know (CONTRACT sections 3
and 4). Unknown fields are rejected rather than ignored: a misspelt
``idempotency_key`` silently dropped would double-start instances.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
)

from worker.errors import InvalidJob
from worker.validation import describe

MAX_JOB_BYTES = 1024 * 1024
TARGET_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
JOB_ID = r"^[A-Za-z0-9._:-]{1,128}$"
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+$")

Printable = Annotated[StrictStr, Field(min_length=1, max_length=512, pattern=_PRINTABLE.pattern)]
Status = Literal["created", "duplicate", "failed"]
ErrorKind = Literal["invalid", "permanent", "conflict", "exhausted", "ambiguous"]


def _non_finite(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Where ``value`` holds NaN or an infinity (paths relative to ``value``)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*path, index))


def utcnow() -> datetime:
    """Now, in UTC, to the millisecond (the precision results carry)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso_ms(value: datetime) -> str:
    """``2026-11-25T10:00:00.042Z``: the one timestamp format of results."""
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    )


MessageText = Annotated[StrictStr, Field(min_length=1, max_length=255, pattern=_PRINTABLE.pattern)]


class StartMessage(BaseModel):
    """A start by message: the engine starts the process whose message start event has
    this ``name`` (Camunda 8 and 7). ``ttl`` (milliseconds) is part of the contract, but a
    start is correlated, never buffered, so engines accept only 0 (see the adapters)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: MessageText
    correlation_key: MessageText | None = None
    ttl: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None


def compact_json(value: object) -> str:
    """JSON without spaces; what JSON cannot hold (a date) as its text."""
    return json.dumps(value, default=str, separators=(",", ":"))


class Job(BaseModel):
    """A start job as producers send it (``send_task(..., kwargs={"job": {...}})``).

    ``job_id``, ``enqueued_at``, ``batch_id`` and ``schedule`` are filled in by
    our own producers; a job from a foreign app gets its Celery task id as
    ``job_id`` and its first-seen time as ``enqueued_at``. Exactly one of
    ``process`` and ``message`` says what to start.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Annotated[StrictStr, Field(pattern=TARGET_NAME)]
    process: Annotated[StrictStr | StrictInt, Field(union_mode="left_to_right")] | None = None
    version: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)] | None = None
    variables: dict[Annotated[str, Field(min_length=1, max_length=256)], JsonValue] = Field(
        default_factory=dict
    )
    business_key: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = None
    idempotency_key: Printable | None = None
    tenant_id: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    options: dict[str, JsonValue] = Field(default_factory=dict)
    message: StartMessage | None = Field(default=None, validate_default=True)
    job_id: Annotated[StrictStr, Field(pattern=JOB_ID)] | None = None
    enqueued_at: datetime | None = None
    batch_id: Printable | None = None
    schedule: Printable | None = None

    @field_validator("variables", "options")
    @classmethod
    def _json_numbers(cls, value: dict[str, Any]) -> dict[str, Any]:
        """NaN and Infinity are no JSON numbers, though Python's json and kombu decode them.

        Refused here, with their path: requests refuses them only while it
        prepares the send, too late to tell them from a connection lost.
        """
        paths = list(_non_finite(value))
        if paths:
            raise ValidationError.from_exception_data(
                "Job", [{"type": "finite_number", "loc": path, "input": None} for path in paths]
            )
        return value

    @field_validator("process")
    @classmethod
    def _process_text(cls, value: str | int | None) -> str | None:
        if value is None:
            return None
        text = str(value)
        if not text or len(text) > 256 or not _PRINTABLE.match(text):
            raise ValueError("must be 1-256 printable characters")
        return text

    @field_validator("message")
    @classmethod
    def _one_start(cls, value: StartMessage | None, info: ValidationInfo) -> StartMessage | None:
        """A job starts a process by its id or by a message, never both, never neither.

        Checked on ``message`` (declared after ``process`` and ``version``, so their
        values are known here) and for a missing one too, so the error names a field.
        """
        has_process = info.data.get("process") is not None or "process" not in info.data
        if value is None and not has_process:
            raise ValueError("a job needs a process or a message; neither is set")
        if value is not None and has_process:
            raise ValueError("a job needs a process or a message, not both")
        if value is not None and info.data.get("version") is not None:
            raise ValueError(
                "a start by message starts the process whose message start event has this "
                "name: leave version unset"
            )
        return value

    @field_validator("enqueued_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_serializer("enqueued_at")
    def _ser_time(self, value: datetime | None) -> str | None:
        return iso_ms(value) if value else None

    @property
    def process_id(self) -> str:
        """The process id; ``message:<name>`` for a start by message (keys, logs, results)."""
        if self.process is None:
            assert self.message is not None
            return f"message:{self.message.name}"
        return str(self.process)

    def payload(self) -> dict[str, Any]:
        """What the job asks for, without who/when: the basis of its fingerprint."""
        return self.model_dump(
            mode="json",
            exclude={"job_id", "enqueued_at", "batch_id", "schedule", "idempotency_key"},
        )

    @classmethod
    def parse(cls, raw: object, encoded: str | None = None) -> Job:
        """Validate anything that came off the queue; every problem becomes `InvalidJob`.

        ``encoded``: ``raw`` as `compact_json` already made it (arrival registers it so).
        """
        if isinstance(raw, str | bytes):
            if len(raw) > MAX_JOB_BYTES:
                raise InvalidJob(f"job: larger than {MAX_JOB_BYTES} bytes")
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise InvalidJob(f"job: not valid JSON ({exc.msg})") from None
            except UnicodeDecodeError:
                raise InvalidJob("job: not valid UTF-8") from None
        if not isinstance(raw, dict):
            raise InvalidJob(f"job: expected a JSON object, got {type(raw).__name__}")
        size = len(compact_json(raw) if encoded is None else encoded)
        if size > MAX_JOB_BYTES:
            raise InvalidJob(f"job: {size} bytes is larger than the {MAX_JOB_BYTES} byte limit")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            nested = {"message": StartMessage.model_fields}
            raise InvalidJob("; ".join(describe(exc, cls.model_fields, nested=nested))) from None


def own_job_id(raw: object) -> str | None:
    """The valid ``job_id`` a raw job carries (a dict or its JSON text), else None.

    A foreign app may send its own ``job_id`` while Celery gives the message
    another task id; the job's own id is the one identity of the job.
    """
    if isinstance(raw, str | bytes) and len(raw) <= MAX_JOB_BYTES:
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    value = raw.get("job_id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) and re.match(JOB_ID, value) else None


class ErrorInfo(BaseModel):
    """The ``error`` of a failed result; ``engine_error`` is the engine's own body.

    ``existing_instance_id``: on a ``conflict`` the engine answered (a Camunda 8.9
    business id held by another active instance), that instance; left out otherwise.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ErrorKind
    http_status: int | None = None
    message: str
    engine_error: JsonValue = None
    existing_instance_id: str | None = Field(default=None, exclude_if=lambda v: v is None)


class Result(BaseModel):
    """Exactly one per job, on the results queue and in the results index."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    idempotency_key: str | None = None
    target: str | None = None
    engine: str | None = None
    process: str | None = None
    business_key: str | None = None
    status: Status
    instance_id: str | None = None
    attempts: Annotated[StrictInt, Field(ge=0)] = 0
    error: ErrorInfo | None = None
    batch_id: str | None = None
    schedule: str | None = None
    enqueued_at: datetime | None = None
    finished_at: datetime = Field(default_factory=utcnow)

    @field_validator("enqueued_at", "finished_at")
    @classmethod
    def _millis(cls, value: datetime | None) -> datetime | None:
        """Results carry milliseconds, so a result read back equals the one written."""
        if value is None:
            return None
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)

    @field_serializer("enqueued_at", "finished_at")
    def _ser_time(self, value: datetime | None) -> str | None:
        return iso_ms(value) if value else None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_json(self) -> str:
        return self.model_dump_json()
