"""The Celery task: decode the delivery, call the service, turn RetryLater into a retry.

Nothing is decided here; `worker.service.StartService` decides. The task adds
only what needs Celery: the task id as job id, the retry count, and
re-queueing with a countdown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

import celery.worker.consumer
import redis
import structlog
from celery import Task, signals
from celery.exceptions import Reject, Retry
from kombu.exceptions import OperationalError

from worker.celery_app import SWEEP_TASK_NAME, TASK_NAME, app, cfg
from worker.errors import InvalidJob
from worker.models import iso_ms, utcnow
from worker.runtime import runtime
from worker.service import Delivery, Done, RetryLater, StartService, identified
from worker.tracing import context as tracing

log = structlog.get_logger("worker.tasks")
INFRA_RETRY_SECONDS = 2.0


@app.task(name=TASK_NAME, bind=True, max_retries=None, acks_late=True)
def start_process(self: Task, *args: Any, job: Any = None, **unexpected: Any) -> str:
    """Start one process instance; returns the result status (results go to the results queue).

    The job runs in a span continuing the trace context its message carries
    (``traceparent``: ours, or a foreign producer's OpenTelemetry Celery
    instrumentation), so the engine call and every log line join that trace.
    """
    first_seen = utcnow()
    delivery = identified(  # the job's own job_id when it has one, as everywhere
        job,
        Delivery(job_id=str(self.request.id), retries=self.request.retries, first_seen=first_seen),
    )
    parent = tracing.parent_from(self.request)
    with (
        tracing.job_span(parent, delivery.job_id, cfg.jobs_queue) as span,
        structlog.contextvars.bound_contextvars(
            job_id=delivery.job_id, attempt=delivery.retries + 1
        ),
    ):
        try:
            outcome = _run(self, job, args, unexpected, delivery, first_seen)
        except (Retry, Reject):
            tracing.describe_job(span, job=job)
            raise
        if isinstance(outcome, RetryLater):
            tracing.describe_job(span, job=job, retry=outcome.countdown)
            _retry(self, runtime().service, delivery.job_id, job, outcome.countdown)
        tracing.describe_job(span, outcome.result)
        return outcome.result.status


def _run(
    task: Task,
    job: Any,
    args: tuple[Any, ...],
    unexpected: dict[str, Any],
    delivery: Delivery,
    first_seen: datetime,
) -> Done | RetryLater:
    """The service's decision, with Celery's own retries for infrastructure and internal errors."""
    service = runtime().service
    if args or unexpected or job is None:
        names = (
            ", ".join([*(["positional arguments"] if args else []), *sorted(unexpected)])
            or "nothing"
        )
        reason = InvalidJob(f"job: the task takes one keyword argument 'job' (got {names})")
        return service.reject(job, delivery, reason)
    if isinstance(job, dict) and "enqueued_at" not in job:
        job = {**job, "enqueued_at": iso_ms(first_seen)}
    try:
        return service.handle(job, delivery)
    except (redis.RedisError, OperationalError) as exc:
        log.warning("job.infrastructure_unavailable", error=type(exc).__name__)
        _retry(task, service, delivery.job_id, job, INFRA_RETRY_SECONDS)
    except Exception as exc:
        log.exception("job.internal_error")
        if delivery.retries >= service.policy.task_max_retries:
            why = f"internal error after {delivery.retries + 1} attempts: {type(exc).__name__}"
            return service.give_up(job, delivery, why)
        _retry(task, service, delivery.job_id, job, service.policy.countdown(delivery.retries))


def _retry(task: Task, service: StartService, job_id: str, job: Any, countdown: float) -> NoReturn:
    """Re-queue the job with a countdown; if that publish fails, leave the job to the sweeper.

    Celery turns a retry it cannot publish (broker down or full, an ETA out of
    range) into a Reject that drops the message; the job's in-flight entry is
    then made due when the retry would have run, so the sweeper re-drives it.
    """
    try:
        raise task.retry(countdown=countdown, max_retries=None, kwargs={"job": job}) from None
    except Reject as exc:
        log.warning("job.retry_publish_failed", error=type(exc.reason).__name__)
        try:
            service.retry_not_scheduled(job_id, job, countdown)
        except Exception as inner:  # Redis down too: the deadline set before the retry stands
            log.warning("job.retry_not_registered", error=type(inner).__name__)
        raise


def _reject_message(message: Any, why: str) -> None:
    """A message that never reaches the task still gets its one failed result."""
    headers = getattr(message, "headers", None) or {}
    job_id = str(headers.get("id") or "undecodable")
    delivery = Delivery(job_id=job_id, first_seen=utcnow())
    try:
        runtime().service.reject(None, delivery, InvalidJob(f"job: {why}"))
    except Exception:
        log.exception("job.reject_failed", job_id=job_id)


@app.task(name=SWEEP_TASK_NAME, ignore_result=True)
def sweep() -> dict[str, int]:
    """Publish stranded results and re-drive undecided jobs (run by beat)."""
    from worker import producer
    from worker.broker.connections import shared_redis
    from worker.delivery.sweeper import sweep as run_sweep
    from worker.delivery.sweeper import warn_results_backlog
    from worker.metrics import broker_redis_url

    rt = runtime()
    report = run_sweep(
        rt.results,
        rt.service.inflight,
        producer.publish,
        redrive_window=rt.service.decide_within,
        dead_letters=rt.dead_letters,
        dlq_retention=rt.settings.dlq_retention_days * 86400.0,
    )
    broker = broker_redis_url(rt.settings.broker_url)
    if broker is not None:
        warn_results_backlog(
            shared_redis(broker), rt.settings.results_queue, rt.settings.results_queue_warn_depth
        )
    return dict(report.__dict__)


@signals.task_rejected.connect
def _rejected(message: Any = None, exc: Exception | None = None, **_: Any) -> None:
    """Celery refused the message (unknown task, invalid task message)."""
    _reject_message(message, f"message rejected by the worker ({type(exc).__name__})")


class Consumer(celery.worker.consumer.Consumer):
    """Celery's consumer, plus a result for messages whose body is not JSON.

    Celery acknowledges and logs such a message; without this the producer
    would wait for a result forever.
    """

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        super().on_decode_error(message, exc)
        _reject_message(message, f"message body could not be decoded ({type(exc).__name__})")


@signals.worker_process_shutdown.connect
def _flush_child_spans(**_: Any) -> None:
    """A prefork child leaves through ``os._exit``: export its last spans first."""
    tracing.flush()


@signals.worker_shutdown.connect
def _flush_spans(**_: Any) -> None:
    tracing.shutdown()
