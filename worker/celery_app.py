"""The Celery app and its reliability settings.

Only this module and tasks.py import Celery.

Why each setting:

* JSON only: any app can produce jobs and nothing can smuggle a pickle in.
* ``task_acks_late`` + ``task_reject_on_worker_lost``: a job is acknowledged
  after it is decided, so a worker killed mid-call gets it redelivered.
* ``worker_prefetch_multiplier = 1``: a dying worker strands one job, not many.
* ``visibility_timeout`` (Redis) longer than ``task_time_limit``: the broker
  never hands a still-running job to a second worker.
* broker connection retry on start-up: workers survive the broker starting late.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from kombu.entity import Exchange, Queue

from worker.config import Settings, settings
from worker.errors import ConfigError

TASK_NAME = "startproc.start_process"
SWEEP_TASK_NAME = "startproc.sweep"

cfg = settings()


def reliability_conf(cfg: Settings, queue: str) -> dict[str, object]:
    """Broker, acknowledgement, prefetch, serializer and pool settings for one queue.

    Shared with the benchmarks' no-op baseline, so the two always compare like
    with like.
    """
    amqp = (cfg.broker_url or "").startswith(("amqp://", "amqps://", "pyamqp://"))
    # RabbitMQ: publisher confirms, so a job or retry the broker did not take raises
    # instead of vanishing. Redis: the visibility timeout (see above); kombu sweeps
    # for unacknowledged messages past it only every interval x throttle seconds
    # (100 s by default), so make that a fraction of the timeout.
    transport: dict[str, object] = (
        {"confirm_publish": True}
        if amqp
        else {
            "visibility_timeout": cfg.visibility_timeout,
            "unacked_restore_interval": max(1, min(10, cfg.visibility_timeout // 4)),
            "unacked_restore_throttle": 1,
        }
    )
    return {
        "broker_url": cfg.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport,
        "broker_pool_limit": max(10, cfg.worker_concurrency),
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": cfg.task_time_limit,
        "task_soft_time_limit": max(cfg.task_time_limit - 10, 5),
        "task_default_queue": queue,
        # The default exchange: routing by queue name needs no binding to survive a
        # Redis restart (kombu caches Redis bindings in process memory).
        "task_queues": [Queue(queue, Exchange(""), routing_key=queue, durable=True)],
        "task_default_exchange": "",
        "task_create_missing_queues": True,
        "worker_pool": cfg.worker_pool,
        "worker_concurrency": cfg.worker_concurrency,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "enable_utc": True,
    }


app = Celery("startproc", include=["worker.tasks"])
app.conf.update(
    reliability_conf(cfg, cfg.jobs_queue),
    task_routes={TASK_NAME: {"queue": cfg.jobs_queue, "routing_key": cfg.jobs_queue}},
    worker_hijack_root_logger=False,
    worker_consumer="worker.tasks:Consumer",
    # Celery's own entries plus the schedules file (STARTPROC_SCHEDULES), one slot = one start.
    beat_scheduler="worker.schedules_beat:Scheduler",
    beat_schedule={
        "startproc-sweep": {"task": SWEEP_TASK_NAME, "schedule": cfg.sweep_interval},
    },
)


@signals.setup_logging.connect
def _logging(**_: Any) -> None:
    """Celery logs through our structlog JSON formatter instead of its own."""
    from worker.logs import configure

    configure(cfg.log_level, cfg.log_format)


@signals.worker_init.connect
def _fail_fast(**_: Any) -> None:
    """Bad config stops the worker at start with the file, key and a suggestion."""
    try:
        cfg.require_broker()
        from worker.runtime import runtime

        runtime()
    except ConfigError as exc:
        raise SystemExit(f"startproc: configuration error:\n{exc}") from None


import worker.metrics  # noqa: E402, F401  (connects the worker-side exporter's worker_init hook)
