"""Start one job: the whole decision path, as plain code with no Celery in it.

``StartService.handle`` takes a raw job and a delivery, and returns either
``Done(result)`` (the job is decided; its one result is recorded and
published) or ``RetryLater(countdown)`` (ask the queue to bring it back).
The Celery task is a thin shell around it, and tests drive it directly.

The order of steps is the product's promise:

1. a job that already has a result is only re-published (redelivery);
2. the job and its options are validated before anything is claimed;
3. the ledger decides who may call the engine (claim / duplicate / conflict / busy);
4. a claim that may follow a lost outcome (a crash, an ambiguous answer, writes a
   Redis restart or failover lost) **reconciles before it re-sends**;
5. the engine is called with in-call retries; the outcome is written to the
   ledger with the claim's fence, then recorded and published as the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from worker.config import Targets
from worker.dlq import DeadLetters
from worker.engines import EngineCache
from worker.engines.base import Engine, Started, StartRequest
from worker.errors import (
    AmbiguousError,
    ConflictError,
    InvalidJob,
    JobError,
    PermanentError,
    TransientError,
)
from worker.failpoints import failpoint
from worker.inflight import InFlight
from worker.keys import (
    deliveries_key,
    fingerprint,
    idempotency_key,
    result_key,
    retried_key,
)
from worker.ledger import Claim, FinalState, Ledger
from worker.liveness import Liveness
from worker.metrics import ambiguous_outcome, in_call_retry, job_finished
from worker.models import ErrorInfo, Job, Result, Status, own_job_id, utcnow
from worker.ratelimit import RateLimiter
from worker.redis_batch import Batch, ScriptCall
from worker.results import ResultStore
from worker.retry import RetryPolicy

if TYPE_CHECKING:
    from requests import PreparedRequest

DELIVERY_COUNT_TTL = 86400
"""Seconds the per-job delivery counters are kept after the last delivery."""
ATTEMPT_MARGIN_SECONDS = 1.0
"""Added to connect_timeout + timeout: the longest one attempt can hold a key (as for leases)."""

log = structlog.get_logger("worker.service")


@dataclass(frozen=True)
class Delivery:
    """What the queue knows about this run of the job."""

    job_id: str
    retries: int = 0
    first_seen: datetime | None = None


@dataclass(frozen=True)
class Done:
    result: Result


@dataclass(frozen=True)
class RetryLater:
    countdown: float
    reason: str


Outcome = Done | RetryLater


class RateLimited(TransientError):
    """The target's shared rate limit asks for a wait longer than an in-call pause."""


class Fenced(TransientError):
    """Another holder took the key over (our lease ran out): stand back."""


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
        existing, lost = self._arrive(raw_job, delivery)
        if existing is not None:
            self.results.publish_pending(delivery.job_id)
            self.inflight.done(delivery.job_id)
            return Done(existing)
        if lost >= self.max_deliveries:
            return self.give_up(
                raw_job,
                delivery,
                f"poison message: the worker was lost {lost} times while holding it",
            )
        try:
            job = Job.parse(raw_job)
        except InvalidJob as exc:
            return self.reject(raw_job, delivery, exc)
        run = _Run(self, job, delivery)
        try:
            outcome = run.execute()
        except JobError as exc:
            return run.fail(exc)
        if isinstance(outcome, RetryLater):
            outcome = RetryLater(self.policy.bounded(outcome.countdown), outcome.reason)
            self._track(delivery.job_id, raw_job, outcome.countdown)
        return outcome

    def _arrive(self, raw_job: Any, delivery: Delivery) -> tuple[Result | None, int]:
        """One round trip on arrival: an earlier result, lost deliveries, the registration.

        Every delivery is counted, and so is every delivery that ended in a
        planned retry; the rest were lost with their worker, so a crash loop
        shows up as a growing difference. The retry count is kept in Redis, not
        taken from the message: a job the sweeper re-drives arrives as a new
        message with ``retries = 0``. The job is registered for the sweeper
        before anything can fail.
        """
        key = deliveries_key(delivery.job_id)
        pipe = self.ledger.client.pipeline(transaction=False)
        pipe.get(result_key(delivery.job_id))
        pipe.incr(key)
        pipe.expire(key, DELIVERY_COUNT_TTL)
        pipe.get(retried_key(delivery.job_id))
        if isinstance(raw_job, dict):
            deadline = time.time() + self.decide_within
            self.inflight.track(delivery.job_id, raw_job, deadline, pipe=pipe, holder=self.holder())
        raw_result, count, _, retried, *_ = pipe.execute()
        existing = Result.model_validate_json(raw_result) if raw_result else None
        # Celery's own count still covers retries the service never saw (internal errors).
        planned = max(int(retried or 0), delivery.retries)
        return existing, int(count) - 1 - planned

    def _track(self, job_id: str, raw_job: Any, after: float) -> None:
        """A planned retry: move the sweeper's deadline and count it as a delivery not lost."""
        pipe = self.ledger.client.pipeline(transaction=True)
        deadline = time.time() + after + self.decide_within
        self.inflight.track(job_id, raw_job, deadline, pipe=pipe, holder="")  # in the broker now
        pipe.incr(retried_key(job_id))
        pipe.expire(retried_key(job_id), DELIVERY_COUNT_TTL)
        pipe.execute()

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
        return self._done(invalid_result(raw_job, identified(raw_job, delivery), exc))

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
        return self._done(base.model_copy(update={"error": info}))

    def _done(self, result: Result, ledger_step: ScriptCall | None = None) -> Outcome:
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


@dataclass
class _Run:
    """One delivery of one valid job."""

    service: StartService
    job: Job
    delivery: Delivery
    key: str = ""
    engine: Engine | None = None
    fence: int = 0
    attempts: int = 0
    fingerprint: str = ""
    premarked: bool = False
    """The claim already marked the first send (a new key, no rate limit to wait for)."""
    prepared: PreparedRequest | None = None
    """The start request with credentials applied before the claim, for the first send."""

    def __post_init__(self) -> None:
        self.job_id = self.job.job_id or self.delivery.job_id
        self.key = idempotency_key(
            target=self.job.target,
            process=self.job.process_id,
            explicit=self.job.idempotency_key,
            business_key=self.job.business_key,
            job_id=self.job_id,
        )
        self.fingerprint = fingerprint(self.job.payload())
        self.log = log.bind(job_id=self.job_id, target=self.job.target, key=self.key)

    # ---- the path

    def execute(self) -> Outcome:
        svc = self.service
        self.engine = svc.engines.get(self.job.target)
        request = self.engine.start_request(self.job, self.key)
        self.prepared = self._credentials_first(request)
        claim = self._claim()
        if claim.status == "busy":
            return RetryLater(max(claim.wait_ms / 1000, 0.5), "another worker holds this key")
        if claim.status == "conflict":
            raise ConflictError(
                f"idempotency key {self.key!r} was already used with a different payload "
                f"(job {claim.other_job_id})"
            )
        if claim.status == "duplicate":
            self.attempts = claim.attempts
            status: Status = "created" if claim.other_job_id == self.job_id else "duplicate"
            return self.succeed(claim.instance_id, status)
        self.fence = claim.fence
        self.attempts = claim.attempts
        self.premarked = claim.sending
        if claim.maybe_sent:
            try:
                found = self._reconcile(claim)
            except (TransientError, PermanentError) as exc:
                return self._unresolved(exc)
            if found is not None:
                return self._created(found)
        return self._send(request)

    def _claim(self) -> Claim:
        svc = self.service
        fp = self.fingerprint
        target = svc.targets[self.job.target]
        # With a rate limit the send may wait for a token, so it is marked only then;
        # without credentials in place it is marked once they are (after a token fetch).
        send = not target.rate_limit and self.prepared is not None
        attempt = target.connect_timeout + target.timeout + ATTEMPT_MARGIN_SECONDS
        deadline = time.monotonic() + svc.busy_wait
        delay = 0.02
        while True:
            claim = svc.ledger.claim(
                self.job.target,
                self.key,
                fp,
                self.job_id,
                send=send,
                holder=svc.holder(),
                attempt_seconds=attempt,
                enqueued_at=self.enqueued_at(),
            )
            if claim.status != "busy" or time.monotonic() + delay > deadline:
                return claim
            svc.sleep(min(delay, claim.wait_ms / 1000))
            delay = min(delay * 2, 0.5)

    def enqueued_at(self) -> float | None:
        """When the job was enqueued (Unix time): one enqueued before a Redis switch may
        have been started in the writes the switch lost (`worker.ledger`)."""
        enqueued = self.job.enqueued_at
        return enqueued.timestamp() if enqueued is not None else None

    def _credentials_first(self, request: StartRequest) -> PreparedRequest | None:
        """Apply credentials before claiming when they are at hand (a cached token).

        Then the claim may mark the first send: nothing slow is left between
        that mark and the send. None when a token must be fetched first (that
        happens in the attempt, before it marks its send, under the retry
        policy; and a duplicate never costs a token request) or the fetch failed.
        """
        assert self.engine is not None
        if not self.engine.credentials.ready:
            return None
        try:
            return self.engine.prepare(request)
        except JobError:
            return None

    def _reconcile(self, claim: Claim) -> str | None:
        """Find the instance a lost attempt may have created, before sending again.

        Lookups repeat until ``reconcile_window`` seconds after the lost attempt
        could last have been answered (an engine may still be committing it, a
        search index may lag), counted from that attempt, not from now: after a
        crash the lease has usually outlived the window, and one lookup is enough.
        """
        assert self.engine is not None
        target = self.service.targets[self.job.target]
        if not self.engine.supports_lookup:
            if target.retry_ambiguous:
                self.log.warning("job.resend_unverified", reason="retry_ambiguous")
                return None
            raise AmbiguousError(
                f"{self.engine.name} has no lookup: an earlier attempt may have created the "
                "instance; an operator must check (set retry_ambiguous = true to resend)"
            )
        window = self.service.reconcile_window - claim.since_send
        if claim.holder_died or claim.writes_lost:
            # that send's answer could have come up to one attempt after it
            window += target.connect_timeout + target.timeout
        deadline = time.monotonic() + max(window, 0.0)
        delay = 0.1
        failpoint("while_reconciling", self.job_id, self.job.process_id)
        while True:
            found = self._look_up()
            if found is not None or time.monotonic() + delay > deadline:
                self.log.info("job.reconciled", found=found, why=_why(claim))
                return found
            self.service.sleep(delay)  # search is eventually consistent (C8)
            delay = min(delay * 2, 2.0)

    def _look_up(self) -> str | None:
        """One lookup with the starts' in-call retries.

        A lookup only reads, so an answer lost on the way back (a timeout, a
        502) is as safe to repeat as a 503: it retries as transient.
        """
        engine = self.engine
        assert engine is not None

        def attempt() -> str | None:
            try:
                return engine.lookup(self.job, self.key)
            except AmbiguousError as exc:
                raise TransientError(
                    exc.message, http_status=exc.http_status, engine_error=exc.engine_error
                ) from None

        def on_retry(error: TransientError) -> None:
            self.log.info("job.lookup_retry", error=error.message, http_status=error.http_status)

        return self.service.policy.call(attempt, on_retry)

    def _unresolved(self, exc: TransientError | PermanentError) -> Outcome:
        """The lookup could not be done, so an earlier attempt stays unresolved: ambiguous.

        Never ``permanent``: an instance may exist. The ledger keeps the key
        ambiguous, so whoever comes next looks it up first. A lookup that may
        work later (503, a timeout) retries like a start; one refused for good
        (a start-only role: 401/403) goes to a person at once.
        """
        self._ledger("AMBIGUOUS")
        error = AmbiguousError(
            f"could not check whether an earlier attempt created the instance: {exc.message}",
            http_status=exc.http_status,
            engine_error=exc.engine_error,
        )
        if isinstance(exc, PermanentError):
            return self.fail(error)
        return self._later(error, retry_after=exc.retry_after)

    def _send(self, request: StartRequest) -> Outcome:
        svc = self.service
        assert self.engine is not None
        engine = self.engine

        limit = svc.targets[self.job.target].rate_limit

        def mark() -> None:
            """Called by the engine right before each send, once credentials are in place."""
            if self.premarked:
                self.premarked = False  # the claim marked this first send
            else:
                sent = svc.ledger.mark_sending(self.job.target, self.key, self.fence)
                if sent is None:
                    raise Fenced("the idempotency key was taken over by another worker")
                self.attempts = sent
            failpoint("before_send", self.job_id, self.job.process_id)

        def attempt() -> Started:
            if limit and svc.rate_limiter is not None:
                self._take_token(limit)
            prepared, self.prepared = self.prepared, None  # fresh credentials on a retry
            started = engine.execute(request, prepared, before_send=mark)
            failpoint("after_response", self.job_id, self.job.process_id)
            return started

        def on_retry(error: TransientError) -> None:
            self.log.info("job.retry_in_call", error=error.message, http_status=error.http_status)
            if not isinstance(error, RateLimited):
                in_call_retry(self.job.target)

        try:
            started = svc.policy.call(attempt, on_retry)
        except Fenced:
            return RetryLater(1.0, "fenced out")
        except TransientError as exc:
            self._ledger("RELEASED")
            return self._later(exc)
        except AmbiguousError as exc:
            ambiguous_outcome(self.job.target)
            self._ledger("AMBIGUOUS")
            target = svc.targets[self.job.target]
            if engine.supports_lookup or target.retry_ambiguous:
                return self._later(exc)
            raise
        except JobError:
            self._ledger("FAILED")
            raise
        return self._created(started.instance_id)

    def _take_token(self, limit: str) -> None:
        """Wait for the target's shared rate limit; a long wait becomes a retry later."""
        svc = self.service
        assert svc.rate_limiter is not None
        while (wait := svc.rate_limiter.acquire(self.job.target, limit)) > 0:
            if wait > svc.policy.cap:
                raise RateLimited(f"rate limit {limit} of target reached", retry_after=wait)
            svc.sleep(wait)

    # ---- outcomes

    def _later(self, exc: JobError, retry_after: float | None = None) -> Outcome:
        policy = self.service.policy
        if self.delivery.retries >= policy.task_max_retries:
            return self.fail(exc, exhausted=True)
        retry_after = exc.retry_after if isinstance(exc, TransientError) else retry_after
        countdown = policy.countdown(self.delivery.retries, retry_after)
        self.log.info("job.retry_later", countdown=round(countdown, 3), error=exc.message)
        return RetryLater(countdown, exc.message)

    def _ledger(self, state: FinalState, instance_id: str = "") -> bool:
        return bool(self._finish_call(state, instance_id).run())

    def _finish_call(self, state: FinalState, instance_id: str = "") -> ScriptCall:
        """The ledger's final write, with what it needs to rebuild an entry Redis lost."""
        return self.service.ledger.finish_call(
            self.job.target,
            self.key,
            self.fence,
            state,
            instance_id,
            fingerprint=self.fingerprint,
            job_id=self.job_id,
            attempts=self.attempts,
        )

    def _created(self, instance_id: str) -> Outcome:
        finish = self._finish_call("SUCCEEDED", instance_id)
        result = self._result("created", instance_id=instance_id)
        return self.service._done(result, ledger_step=finish)

    def succeed(self, instance_id: str, status: Status) -> Outcome:
        return self.service._done(self._result(status, instance_id=instance_id))

    def fail(self, exc: JobError, exhausted: bool = False) -> Outcome:
        info = ErrorInfo.model_validate(exc.as_error_info())
        if exhausted and not isinstance(exc, AmbiguousError):
            info = info.model_copy(update={"kind": "exhausted"})
        result = self._result("failed", error=info)
        if info.kind in ("exhausted", "ambiguous"):
            self.service.dead_letters.add(
                self.job_id, self.job.model_dump(mode="json"), info.kind, info.model_dump()
            )
        return self.service._done(result)

    def _result(self, status: Status, **fields: Any) -> Result:
        job = self.job
        return Result(
            job_id=self.job_id,
            idempotency_key=self.key,
            target=job.target,
            engine=self.engine.name
            if self.engine
            else _engine_of(self.service.targets, job.target),
            process=job.process_id,
            business_key=job.business_key,
            status=status,
            attempts=self.attempts,
            batch_id=job.batch_id,
            schedule=job.schedule,
            enqueued_at=job.enqueued_at or self.delivery.first_seen,
            **fields,
        )


def identified(raw_job: Any, delivery: Delivery) -> Delivery:
    """The delivery under the job's one identity: its own valid ``job_id``, else the task id.

    Registration, delivery counts, the result and the clearing all use it, so a
    foreign job whose ``job_id`` differs from its Celery task id is never left
    registered under one id after being decided under the other.
    """
    own = own_job_id(raw_job)
    return delivery if own is None or own == delivery.job_id else replace(delivery, job_id=own)


def _why(claim: Claim) -> str:
    """Why a claim reconciled first, for the log."""
    if claim.writes_lost:
        return "redis_switched"
    return "holder_died" if claim.holder_died else "answer_lost"


def _engine_of(targets: Targets, name: str) -> str | None:
    target = targets.get(name)
    return getattr(target, "engine", None) if target else None


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
