"""Start one job: the whole decision path, as plain code with no Celery in it.

``StartService.handle`` takes a raw job and a delivery, and returns either
``Done(result)`` (the job is decided; its one result is recorded and
published) or ``RetryLater(countdown)`` (ask the queue to bring it back).
The Celery task is a thin shell around it, and tests drive it directly.

The order of steps is the product's promise:

1. a job that already has a result is only re-published (redelivery);
2. a job lost with its worker too often is poison: dead-lettered, not retried;
3. the job and its options are validated before anything is claimed;
4. an `Attempt` claims, reconciles (also after writes a Redis restart or failover
   lost), calls and records (`worker.attempt`).

Steps 1, 2 and the first claim are one script (`Deliveries.arrive`): the job
is read and its claim built first, and decided only after the delivery counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import structlog

from worker.attempt import Attempt, Delivery, Done, Outcome, RetryLater
from worker.delivery.deliveries import Deliveries
from worker.delivery.dlq import DeadLetters
from worker.delivery.inflight import InFlight
from worker.delivery.ledger import ClaimCall, Ledger
from worker.delivery.liveness import Liveness
from worker.delivery.ratelimit import RateLimited, RateLimiter
from worker.delivery.redis_batch import Batch, ScriptCall
from worker.delivery.results import ResultStore
from worker.engines import EngineCache
from worker.errors import InvalidJob, JobError
from worker.failpoints import failpoint
from worker.metrics import job_finished
from worker.models import ErrorInfo, Job, Result, compact_json, own_job_id, utcnow
from worker.retry import RetryPolicy
from worker.targets import Targets

log = structlog.get_logger("worker.service")


__all__ = ["Delivery", "Done", "RateLimited", "RetryLater", "StartService", "identified"]


@dataclass
class StartService:
    targets: Targets
    engines: EngineCache
    ledger: Ledger
    results: ResultStore
    dead_letters: DeadLetters
    policy: RetryPolicy
    inflight: InFlight
    rate_limiter: RateLimiter | None = None
    busy_wait: float = 5.0
    reconcile_window: float = 10.0
    max_deliveries: int = 5
    decide_within: float = 600.0
    """Seconds after which the sweeper re-drives a job nobody decided."""
    liveness: Liveness | None = None
    """This process's heartbeat: its jobs and claims name it, so its death is seen soon."""
    sleep: Callable[[float], None] = time.sleep

    # ------------------------------------------------------------------ entry

    def handle(self, raw_job: Any, delivery: Delivery) -> Outcome:
        delivery = identified(raw_job, delivery)
        encoded = compact_json(raw_job) if isinstance(raw_job, dict) else None
        run, claim, problem = self._prepare(raw_job, encoded, delivery)
        arrival = self.deliveries.arrive(
            delivery.job_id,
            raw_job,
            delivery.retries,
            self.holder(),
            encoded,
            claim.script if claim is not None else None,
            self.max_deliveries,
        )
        if arrival.existing is not None:
            self.results.publish_pending(delivery.job_id)
            self.inflight.done(delivery.job_id)
            return Done(arrival.existing)
        if arrival.lost >= self.max_deliveries:
            return self.give_up(
                raw_job,
                delivery,
                f"poison message: the worker was lost {arrival.lost} times while holding it",
            )
        if run is None:
            assert isinstance(problem, InvalidJob)
            return self.reject(raw_job, delivery, problem)
        if isinstance(problem, JobError):
            return run.fail(problem)
        if problem is not None:
            raise problem
        assert claim is not None and arrival.claim_reply is not None
        try:
            outcome = run.execute(claim.read(arrival.claim_reply))
        except JobError as exc:
            return run.fail(exc)
        if isinstance(outcome, RetryLater):
            outcome = RetryLater(self.policy.bounded(outcome.countdown), outcome.reason)
            self.deliveries.planned_retry(delivery.job_id, raw_job, outcome.countdown)
        return outcome

    def _prepare(
        self, raw_job: Any, encoded: str | None, delivery: Delivery
    ) -> tuple[Attempt | None, ClaimCall | None, Exception | None]:
        """The job read and its first claim built, before arrival, which runs the claim.

        No Redis here: what fails (a job that cannot be read, a job error, a
        bug) is held until the delivery is counted and registered, then
        decided as before. A worker killed in here (pure CPU, on a message
        already decoded and within the size limit) leaves the job to the broker's
        redelivery, as one killed while Celery decodes the message does.
        """
        try:
            job = Job.parse(raw_job, encoded)
        except InvalidJob as exc:
            return None, None, exc
        run = Attempt(self, job, delivery)
        try:
            return run, run.prepare(), None
        except Exception as exc:  # decided (a job error) or raised (a bug) after arrival
            return run, None, exc

    @cached_property
    def deliveries(self) -> Deliveries:
        return Deliveries(self.ledger.client, self.inflight, self.decide_within)

    def holder(self) -> str:
        """This worker process as the holder of its jobs and claims ("" without liveness)."""
        return self.liveness.holder() if self.liveness is not None else ""

    def retry_not_scheduled(self, job_id: str, raw_job: Any, countdown: float) -> None:
        """The queue refused the retry (broker down or full): the sweeper re-drives it instead.

        The job stays registered, due when its retry would have run, so the next
        sweep after that re-enqueues it under the same id and key.
        """
        log.warning("job.retry_not_scheduled", job_id=job_id, countdown=round(countdown, 3))
        self.inflight.track(job_id, raw_job, time.time() + countdown)

    def reject(self, raw_job: Any, delivery: Delivery, exc: InvalidJob) -> Outcome:
        """Decide a job that cannot be read at all: its one result is ``invalid``."""
        return self.done(invalid_result(raw_job, identified(raw_job, delivery), exc))

    def give_up(self, raw_job: Any, delivery: Delivery, reason: str) -> Outcome:
        """Decide a job that kept failing for reasons of our own (a bug, a crash loop).

        The result says ``exhausted`` and the job goes to the dead-letter store:
        whether an instance exists is for a person to check, never guessed.
        """
        exc = InvalidJob(reason)
        delivery = identified(raw_job, delivery)
        base = invalid_result(raw_job, delivery, exc)
        info = ErrorInfo(kind="exhausted", message=reason)
        self.dead_letters.add(delivery.job_id, raw_job, "exhausted", info.model_dump())
        return self.done(base.model_copy(update={"error": info}))

    def done(self, result: Result, ledger_step: ScriptCall | None = None) -> Outcome:
        """Record the job's one result, publish it, and forget the job: one round trip.

        ``ledger_step`` (the ledger's final write) goes in the same batch. The
        steps run in order, ledger first, and each is idempotent, so a crash
        anywhere in between leaves a redelivery with nothing to undo.
        """
        batch = Batch(self.ledger.client)
        fenced = batch.script(ledger_step) if ledger_step is not None else None
        recorded_at = batch.script(self.results.record_call(result, publish_now=True))
        self.inflight.done(result.job_id, batch)
        answers = batch.execute()
        if fenced is not None and not answers[fenced]:
            log.warning("job.fenced_after_success", job_id=result.job_id)
        recorded = bool(answers[recorded_at])
        self.results.publish_after_record(result.job_id, recorded)
        failpoint("after_result", result.job_id, result.process)
        final = result if recorded else self.results.get(result.job_id) or result
        job_finished(final, first=recorded)
        log.info(
            "job.finished",
            job_id=final.job_id,
            target=final.target,
            status=final.status,
            instance_id=final.instance_id,
            error_kind=final.error.kind if final.error else None,
        )
        return Done(final)


def identified(raw_job: Any, delivery: Delivery) -> Delivery:
    """The delivery under the job's one identity: its own valid ``job_id``, else the task id.

    Registration, delivery counts, the result and the clearing all use it, so a
    foreign job whose ``job_id`` differs from its Celery task id is never left
    registered under one id after being decided under the other.
    """
    own = own_job_id(raw_job)
    return delivery if own is None or own == delivery.job_id else replace(delivery, job_id=own)


def invalid_result(raw: Any, delivery: Delivery, exc: InvalidJob) -> Result:
    """A failed result for a job too malformed to parse: keep what can be read safely."""
    fields = raw if isinstance(raw, dict) else {}

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value[:256] if isinstance(value, str) else None

    return Result(
        job_id=delivery.job_id,
        idempotency_key=text("idempotency_key"),
        target=text("target"),
        process=text("process"),
        business_key=text("business_key"),
        status="failed",
        error=ErrorInfo(kind="invalid", message=exc.message),
        batch_id=text("batch_id"),
        schedule=text("schedule"),
        enqueued_at=delivery.first_seen,
        finished_at=utcnow(),
    )
