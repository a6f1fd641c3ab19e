"""What a start by message needs on every engine that has one (Camunda 8 and 7).

A job may name a start message (``{"message": {"name", "correlation_key",
"ttl"}}``) instead of a process: the engine starts the process whose message
start event has that name. The worker *correlates* the message (Camunda 8
``POST /v2/messages/correlation``, Camunda 7 ``POST /message`` with
``resultEnabled``), so the engine answers with the instance it started and
the job's result can name it. A buffered *publication* (a ``ttl`` above 0)
answers before any instance exists, so no engine here accepts one.

The idempotency key travels as the variable ``_startproc_key`` (message
requests carry no tags and, on Camunda 8, no business id), so a lost answer
is reconciled by searching that variable.
"""

from __future__ import annotations

from typing import Any

from worker.engines._shared import reserve_key_variable
from worker.engines.base import KEY_VARIABLE
from worker.errors import InvalidJob
from worker.models import Job, StartMessage


def start_message(job: Job, engine: str) -> StartMessage:
    """The job's start message, refused when it asks for a buffered publication."""
    message = job.message
    if message is None:
        raise InvalidJob(f"message: {engine} was asked for a start by message without one")
    if message.ttl:
        raise InvalidJob(
            f"message.ttl: {engine} starts by correlating the message at once, so the "
            "result can name the instance it started; a buffered message (ttl above 0) "
            "has no instance yet: leave ttl unset or 0"
        )
    return message


def refuse_options(job: Job, engine: str, allowed: tuple[str, ...] = ()) -> None:
    """Options of a process start that a start by message has no place for."""
    for name in job.options:
        if name not in allowed:
            hint = f" (only {', '.join(allowed)})" if allowed else ""
            raise InvalidJob(
                f"options.{name}: a start by message on {engine} takes no such option{hint}"
            )


def variables_with_key(job: Job, key: str) -> dict[str, Any]:
    """The job's variables plus the idempotency key, for the reconcile lookup."""
    reserve_key_variable(job.variables)
    return {**job.variables, KEY_VARIABLE: key}
