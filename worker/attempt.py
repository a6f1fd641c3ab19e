"""One delivery of one valid job: claim, reconcile, call the engine, record the outcome.

`worker.service.StartService.handle` decides *whether* a job runs (an earlier
result, a poison message, a job that cannot be read); an `Attempt` is the
path a runnable job takes, in the order the product's promise needs:

1. the ledger decides who may call the engine (claim / duplicate / conflict / busy);
2. a claim that may follow a lost outcome **reconciles before it re-sends**;
3. the engine is called with in-call retries (credentials in place before the
   send is marked); the outcome is written to the ledger with the claim's
   fence, then recorded and published as the job's one result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import structlog

from worker.delivery.ledger import Claim, ClaimCall, FinalState
from worker.delivery.ratelimit import RateLimited
from worker.delivery.redis_batch import ScriptCall
from worker.engines.base import Engine, Started, StartRequest
from worker.errors import (
    AmbiguousError,
    Backpressure,
    ConflictError,
    JobError,
    PermanentError,
    TransientError,
)
from worker.failpoints import failpoint
from worker.keys import fingerprint, idempotency_key
from worker.metrics import ambiguous_outcome, in_call_retry
from worker.models import ErrorInfo, Job, Result, Status
from worker.targets import Targets

if TYPE_CHECKING:
    from requests import PreparedRequest

    from worker.service import StartService

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


class Fenced(TransientError):
    """Another holder took the key over (our lease ran out): stand back."""


@dataclass
class Attempt:
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
    request: StartRequest | None = None
    claim_until: float = 0.0
    """`time.monotonic` after which a busy key is left to a later delivery."""

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

    @cached_property
    def log(self) -> Any:  # structlog's bound logger
        """Bound when first used: most attempts log nothing on their own."""
        return log.bind(job_id=self.job_id, target=self.job.target, key=self.key)

    # ---- the path

    def prepare(self) -> ClaimCall:
        """Engine, start request and credentials, then the first claim, not run yet: it
        runs inside the delivery's arrival (`worker.service.StartService.handle`)."""
        svc = self.service
        self.engine = svc.engines.get(self.job.target)
        self.request = self.engine.start_request(self.job, self.key)
        self.prepared = self._credentials_first(self.request)
        self.claim_until = time.monotonic() + svc.busy_wait
        return self._claim_call()

    def execute(self, first: Claim) -> Outcome:
        """The path from the first claim's answer (`prepare`) to the job's outcome."""
        claim = self._claim(first)
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
        assert self.request is not None
        return self._send(self.request)

    def _claim(self, claim: Claim) -> Claim:
        """Claim again while another worker holds the key, for up to ``busy_wait`` seconds."""
        delay = 0.02
        while claim.status == "busy" and time.monotonic() + delay <= self.claim_until:
            self.service.sleep(min(delay, claim.wait_ms / 1000))
            delay = min(delay * 2, 0.5)
            claim = self._claim_call().run()
        return claim

    def _claim_call(self) -> ClaimCall:
        svc = self.service
        target = svc.targets[self.job.target]
        # With a rate limit the send may wait for a token, so it is marked only then;
        # without credentials in place it is marked once they are (after a token fetch).
        # A job enqueued before a Redis switch may have been started in the lost writes.
        enqueued = self.job.enqueued_at
        return svc.ledger.claim_call(
            self.job.target,
            self.key,
            self.fingerprint,
            self.job_id,
            send=not target.rate_limit and self.prepared is not None,
            holder=svc.holder(),
            attempt_seconds=target.connect_timeout + target.timeout + ATTEMPT_MARGIN_SECONDS,
            enqueued_at=enqueued.timestamp() if enqueued is not None else None,
        )

    def _credentials_first(self, request: StartRequest) -> PreparedRequest | None:
        """Apply credentials before claiming when they are at hand (a cached token).

        Then the claim may mark the first send: nothing slow is left between
        that mark and the send. None when a token must be fetched first (that
        happens in the attempt, before it marks its send, under the retry
        policy; and a duplicate never costs a token request) or the fetch failed.
        """
        assert self.engine is not None
        if request.deferred or not self.engine.credentials.ready:
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
                self.log.info("job.reconciled", found=found, why=claim.why)
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

        target = svc.targets[self.job.target]
        limit = target.rate_limit
        epoch: list[int] = []  # the shared rate's epoch this attempt's token was taken in

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
                epoch[:] = [svc.rate_limiter.wait_for_token(
                    self.job.target, limit, target.adaptive_rate, svc.policy.cap, svc.sleep)]
            prepared, self.prepared = self.prepared, None  # fresh credentials on a retry
            try:
                started = engine.execute(request, prepared, before_send=mark)
            except Backpressure:
                if epoch and limit and target.adaptive_rate and svc.rate_limiter is not None:
                    svc.rate_limiter.slow_down(self.job.target, limit, epoch[0])
                raise
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
        if started.existing:
            self.log.info("job.engine_duplicate", instance_id=started.instance_id)
        return self._created(started.instance_id, "duplicate" if started.existing else "created")

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

    def _created(self, instance_id: str, status: Status = "created") -> Outcome:
        finish = self._finish_call("SUCCEEDED", instance_id)
        result = self._result(status, instance_id=instance_id)
        return self.service.done(result, ledger_step=finish)

    def succeed(self, instance_id: str, status: Status) -> Outcome:
        return self.service.done(self._result(status, instance_id=instance_id))

    def fail(self, exc: JobError, exhausted: bool = False) -> Outcome:
        info = ErrorInfo.model_validate(exc.as_error_info())
        if exhausted and not isinstance(exc, AmbiguousError):
            info = info.model_copy(update={"kind": "exhausted"})
        result = self._result("failed", error=info)
        if info.kind in ("exhausted", "ambiguous"):
            self.service.dead_letters.add(
                self.job_id, self.job.model_dump(mode="json"), info.kind, info.model_dump()
            )
        return self.service.done(result)

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


def _engine_of(targets: Targets, name: str) -> str | None:
    target = targets.get(name)
    return getattr(target, "engine", None) if target else None
