"""Settling dead letters: replay (looking up first), resolve by hand, delete.

Dead letters outlive ledger entries (``STARTPROC_DLQ_RETENTION_DAYS`` against
``STARTPROC_RETENTION_DAYS``), and a replay whose ledger entry is gone would
otherwise be a fresh claim and a blind resend. So before a replay is sent,
the ledger entry is made to say what the replay may do (`Ledger.prepare_replay`):

* on an engine with a lookup, the replay always looks the instance up first;
* on one without (Blueworks, TAS) an instance that may exist stops the
  replay, and a person who checked the engine says what they found:
  `resolve_created` records the instance (the ledger's success, and the
  job's one result if it never had one), `resolve_not_created` lets the next
  replay send. A target with ``retry_ambiguous = true`` resends, as it chose.

Plain code over the stores, like `worker.service`; the CLI only prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from worker.delivery.dlq import DeadLetters
from worker.delivery.ledger import Ledger, ReplayMode
from worker.delivery.results import ResultStore
from worker.engines import engine_class
from worker.errors import ConfigError, InvalidJob, SettleError
from worker.keys import fingerprint, idempotency_key
from worker.models import Job, Result
from worker.targets import Targets

Enqueue = Callable[[dict[str, Any]], str]
NOT_CREATED: Literal["not_created"] = "not_created"


@dataclass(frozen=True)
class DeadJob:
    """A dead letter's job, read back: the key and fingerprint its start used."""

    job_id: str
    job: Job
    raw: dict[str, Any]
    key: str
    fingerprint: str
    entry: dict[str, Any]


@dataclass(frozen=True)
class Replayed:
    job_id: str
    new_job_id: str
    ledger: str
    """What the replay's first run will find (`Ledger.prepare_replay`'s answer)."""
    note: str = ""
    """The same for a person."""


NOTES = {
    "UNKNOWN": "the ledger had forgotten the key: the job looks the instance up before sending",
    "LOOKUP": "the job looks the instance up before sending",
    "RELEASED": "resolved as not created: the job sends",
    "ABSENT": "resolved as not created: the job sends",
    "SUCCEEDED": "the ledger records an instance: the job ends as a duplicate of it",
    "BUSY": "a worker holds the key now: the job waits for it",
}


@dataclass(frozen=True)
class Resolved:
    job_id: str
    resolution: Literal["created", "not_created"]
    instance_id: str | None = None
    result_published: bool = False
    """``--created``: the job had no result yet, and now has a created one."""


def dead_job(dead_letters: DeadLetters, job_id: str) -> DeadJob:
    """The entry of ``job_id`` with its job parsed; `SettleError` if missing or unreadable."""
    entry = dead_letters.get(job_id)
    if entry is None:
        raise SettleError(f"no dead letter {job_id!r}")
    raw = entry.get("job")
    try:
        job = Job.parse(raw)
    except InvalidJob as exc:
        raise SettleError(
            f"dead letter {job_id!r} holds a job that cannot be read ({exc.message}); "
            "nothing can be started from it: delete it with `startproc dlq delete`"
        ) from None
    key = idempotency_key(
        target=job.target,
        process=job.process_id,
        explicit=job.idempotency_key,
        business_key=job.business_key,
        job_id=job.job_id or job_id,
    )
    fields = dict(raw) if isinstance(raw, dict) else job.model_dump(mode="json", exclude_none=True)
    return DeadJob(job_id, job, fields, key, fingerprint(job.payload()), entry)


def _has_lookup(targets: Targets, target: str) -> bool:
    """Whether the target's engine can be searched for an instance (unknown: no)."""
    config = targets.get(target)
    try:
        return config is not None and engine_class(getattr(config, "engine", "")).supports_lookup
    except ConfigError:
        return False


def replay(
    dead_letters: DeadLetters, ledger: Ledger, targets: Targets, enqueue: Enqueue, job_id: str
) -> Replayed:
    """Enqueue the job again under its idempotency key, after the ledger says what it may do.

    Raises `SettleError`, sending nothing, when the engine has no lookup and an
    instance may exist: a person has to check and `resolve` first.
    """
    dead = dead_job(dead_letters, job_id)
    mode: ReplayMode = (
        NOT_CREATED
        if dead.entry.get("resolution") == NOT_CREATED
        else "lookup"
        if _has_lookup(targets, dead.job.target)
        else "unknown"
    )
    at = float(dead.entry.get("at") or time.time())
    state = ledger.prepare_replay(dead.job.target, dead.key, dead.fingerprint, job_id, mode, at)
    target = targets.get(dead.job.target)
    unsure = state in ("UNKNOWN", "MAYBE_SENT") and mode == "unknown"
    if unsure and not getattr(target, "retry_ambiguous", False):
        raise SettleError(
            f"an earlier attempt of dead letter {job_id!r} may have created the instance, "
            f"and target {dead.job.target!r} cannot be searched: check the engine for "
            f"idempotency key {dead.key!r}, then `startproc dlq resolve {job_id} --created "
            f"INSTANCE_ID` (it was) or `--not-created` (it was not; a replay then sends)"
        )
    note = NOTES.get(state, f"the ledger entry is {state}: the job sends")
    if unsure:
        note = "the target has retry_ambiguous = true: the job sends again without a lookup"
    job = {k: v for k, v in dead.raw.items() if k not in ("job_id", "enqueued_at")}
    job["idempotency_key"] = dead.key
    new_job_id = enqueue(job)
    dead_letters.remove(job_id)
    return Replayed(job_id, new_job_id, state, note)


def resolve_created(
    dead_letters: DeadLetters,
    ledger: Ledger,
    results: ResultStore,
    targets: Targets,
    job_id: str,
    instance_id: str,
) -> Resolved:
    """A person found the instance: the ledger records it, the job gets a created result
    if it never had a result (the dead letter is then settled and removed)."""
    if not instance_id.strip():
        raise SettleError("--created needs the instance id found in the engine")
    dead = dead_job(dead_letters, job_id)
    target = dead.job.target
    verdict, recorded, holder = ledger.settle_created(
        target, dead.key, dead.fingerprint, job_id, instance_id
    )
    if verdict == "CONFLICT":
        raise SettleError(
            f"the ledger already records instance {recorded!r} for idempotency key "
            f"{dead.key!r} (job {holder!r}), not {instance_id!r}: nothing changed"
        )
    if verdict == "BUSY":
        raise SettleError(
            f"a worker is running idempotency key {dead.key!r} right now (job {holder!r}); "
            "try again once it has finished"
        )
    config = targets.get(target)
    result = Result(
        job_id=job_id,
        idempotency_key=dead.key,
        target=target,
        engine=getattr(config, "engine", None),
        process=dead.job.process_id,
        business_key=dead.job.business_key,
        status="created",
        instance_id=instance_id,
        batch_id=dead.job.batch_id,
        schedule=dead.job.schedule,
        enqueued_at=dead.job.enqueued_at,
    )
    recorded_now = results.record(result, publish_now=True)
    results.publish_after_record(job_id, recorded_now)
    dead_letters.remove(job_id)
    return Resolved(job_id, "created", instance_id, result_published=recorded_now)


def resolve_not_created(dead_letters: DeadLetters, job_id: str) -> Resolved:
    """A person checked: no instance. The dead letter stays; its next replay sends."""
    dead_job(dead_letters, job_id)  # it exists and can be replayed
    dead_letters.mark(job_id, resolution=NOT_CREATED, resolved_at=time.time())
    return Resolved(job_id, NOT_CREATED)
