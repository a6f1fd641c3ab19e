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
* RabbitMQ: quorum queues (``STARTPROC_RABBITMQ_QUEUE_TYPE``, default ``quorum``).
  The jobs queue is bound to a durable topic exchange of the same name, because
  Celery's *native delayed delivery* -- how a countdown retry waits on a quorum
  queue -- hands a delayed message back through the queue's own topic (or
  fanout) exchange, never through the default exchange; without it a retry
  would sit in a worker's memory, where per-consumer prefetch (quorum queues
  have no global QoS) lets it block the worker. Redis keeps the default
  exchange (see `jobs_queue_for`).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import structlog
from celery import Celery, signals
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.exceptions import OperationalError
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

from worker.broker.connections import broker_url_and_options, is_amqp, refuse_redis_cluster
from worker.broker.kombu_redis import transport_for
from worker.config import Settings, settings
from worker.delivery.backlog import PUBLISHED_AT
from worker.errors import ConfigError
from worker.tracing import context as tracing

TASK_NAME = "startproc.start_process"
SWEEP_TASK_NAME = "startproc.sweep"

cfg = settings()
log = structlog.get_logger("worker.celery_app")

QUORUM = {"x-queue-type": "quorum"}
PRECONDITION_FAILED = 406


def quorum_queues(cfg: Settings, broker_url: str | None = None) -> bool:
    """The queues are RabbitMQ quorum queues (an amqp broker and the default queue type)."""
    return is_amqp(broker_url or cfg.broker_url) and cfg.rabbitmq_queue_type == "quorum"


def jobs_queue_for(cfg: Settings, broker_url: str | None = None, name: str | None = None) -> Queue:
    """The jobs queue exactly as the workers declare it, for ``broker_url`` (default: cfg's).

    Producers publish and declare with this very object: a declaration with other
    arguments than the queue on the server has is refused (PRECONDITION_FAILED).

    * RabbitMQ, quorum: a durable quorum queue bound to the durable topic exchange
      of the same name, routing key = queue name. The name is Celery's own choice
      for a missing queue (``task_create_missing_queue_exchange_type``), so a
      declaration Celery makes from the bare queue name matches this one. Messages
      sent through the default exchange (routing key = queue name) land here too.
    * RabbitMQ, classic, and Redis: a durable queue on the default exchange.
    """
    name = name or cfg.jobs_queue
    if quorum_queues(cfg, broker_url):
        exchange = Exchange(name, type="topic", durable=True)
        return Queue(name, exchange, routing_key=name, durable=True, queue_arguments=QUORUM)
    # The default exchange: routing by queue name needs no binding to survive a
    # Redis restart (kombu caches Redis bindings in process memory).
    return Queue(name, Exchange(""), routing_key=name, durable=True)


def reliability_conf(cfg: Settings, queue: str) -> dict[str, object]:
    """Broker, acknowledgement, prefetch, serializer and pool settings for one queue.

    Shared with the benchmarks' no-op baseline, so the two always compare like
    with like.
    """
    amqp = is_amqp(cfg.broker_url)
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
    broker_url = cfg.broker_url
    if broker_url and not amqp:  # Sentinel: kombu's form of the URL and the master's name
        broker_url, options = broker_url_and_options(broker_url)
        transport.update(options)
    conf: dict[str, object] = {
        "broker_url": broker_url,
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
        "task_queues": [jobs_queue_for(cfg, name=queue)],
        "task_default_exchange": "",
        "task_create_missing_queues": True,
        "worker_pool": cfg.worker_pool,
        "worker_concurrency": cfg.worker_concurrency,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "enable_utc": True,
    }
    if quorum_queues(cfg):
        conf.update(
            {
                "task_default_exchange": queue,
                "task_default_exchange_type": "topic",
                "task_default_routing_key": queue,
                # a queue named only by a string is declared like ours, not as a classic one
                "task_create_missing_queue_type": "quorum",
                "task_create_missing_queue_exchange_type": "topic",
                # quorum queues refuse global QoS: per-consumer prefetch instead
                "worker_detect_quorum_queues": True,
                # countdown retries wait in Celery's delay queues (celery_delayed_0..27)
                "broker_native_delayed_delivery_queue_type": "quorum",
            }
        )
    return conf


def job_summary(job: Any) -> str:
    """What Celery shows of a start job (the ``kwargsrepr`` header): never its variables.

    Celery would put ``repr(kwargs)`` in every message, where Flower, task
    events and Celery's own debug logs show it; a job's variables are business
    data (names, amounts, sometimes personal data), so only the target, the
    process (a start message's name) and how many variables there are go there. It is also cheaper:
    Celery's safe repr of a job cost about a fifth of an enqueue's CPU.
    """
    if not isinstance(job, dict):
        return f"{{'job': <{type(job).__name__}>}}"
    variables = job.get("variables")
    count = len(variables) if isinstance(variables, dict) else 0
    message = job.get("message")
    process = job.get("process")
    if process is None and isinstance(message, dict):  # the name only: a correlation key is data
        process = f"message:{message.get('name')}"
    target, process = str(job.get("target"))[:100], str(process)[:200]
    return f"{{'job': {{'target': {target!r}, 'process': {process!r}, 'variables': {count}}}}}"


def message_headers(inherited: Any = None) -> dict[str, Any]:
    """The headers every start job is sent with: publish time and the current trace context.

    A Celery retry passes the delivered message's headers along; their publish
    time and trace context are replaced, so a retry waiting in the queue is
    aged from its own publish and traced as a child of the attempt that sent it.
    """
    headers = dict(inherited) if isinstance(inherited, dict) else {}
    headers[PUBLISHED_AT] = time.time()
    tracing.stamp(headers)
    return headers


class StartprocCelery(Celery):
    """Celery, with countdowns rounded up to whole seconds where RabbitMQ delays them.

    It also sends a start job's `job_summary` as Celery's ``kwargsrepr``, and
    its `message_headers` (publish time, W3C trace context).

    Native delayed delivery truncates a countdown to whole seconds and refuses
    one under a second: ``calculate_routing_key`` raises, and ``Task.retry`` turns
    that into a Reject, which drops the job. Ours are floats (0.5 s for a busy
    key, jittered backoff, ``Retry-After``), so they are rounded *up*: never
    earlier than asked, never refused. Redis keeps exact countdowns.
    """

    def send_task(
        self,
        name: str,
        args: Any = None,
        kwargs: Any = None,
        countdown: float | None = None,
        *rest: Any,
        **options: Any,
    ) -> Any:
        if countdown is not None and countdown > 0 and self._native_delays():
            countdown = math.ceil(countdown)
        if name == TASK_NAME:
            if isinstance(kwargs, dict) and "kwargsrepr" not in options:
                options["kwargsrepr"] = job_summary(kwargs.get("job"))
            options["headers"] = message_headers(options.get("headers"))
        return super().send_task(name, args, kwargs, countdown, *rest, **options)

    def _native_delays(self) -> bool:
        """Celery's own test (``detect_quorum_queues``) minus the broker check: only
        `reliability_conf` on RabbitMQ gives our queues quorum arguments."""
        queues = self.amqp.queues.values()
        return any((q.queue_arguments or {}).get("x-queue-type") == "quorum" for q in queues)


def queue_mismatch(cfg: Settings, exc: BaseException) -> ConfigError:
    """RabbitMQ's PRECONDITION_FAILED on a declaration, as what it means and what to do."""
    reply = getattr(exc, "reply_text", None) or str(exc)
    kind = cfg.rabbitmq_queue_type
    other = "classic" if kind == "quorum" else "quorum"
    jobs, results = cfg.jobs_queue, cfg.results_queue
    layout = (
        f"the jobs queue {jobs!r} is a quorum queue bound to the topic exchange {jobs!r} "
        f"and the results queue {results!r} is a quorum queue"
        if kind == "quorum"
        else f"the jobs queue {jobs!r} and the results queue {results!r} are classic queues "
        "on the default exchange"
    )
    lines = [
        f"RabbitMQ refused a declaration: {reply}",
        f"With STARTPROC_RABBITMQ_QUEUE_TYPE={kind}, {layout}; "
        "the server already holds one of them with other arguments.",
    ]
    if "celery_delayed" in reply:
        lines.append(
            "Celery's delay queues (celery_delayed_0..27) are shared by every Celery app on "
            "the virtual host, and another app declared them otherwise: give startproc a "
            "virtual host of its own (the path of STARTPROC_BROKER_URL)."
        )
    else:
        lines.append(
            f"Either keep the existing queues: set STARTPROC_RABBITMQ_QUEUE_TYPE={other}. "
            f"Or move to {kind} queues: stop the producers, let the workers empty {jobs!r}, "
            f"stop the workers and the readers of {results!r} (read what is left first), "
            "delete the queue or exchange the message above names (`rabbitmqctl delete_queue "
            "NAME`, `rabbitmqadmin delete exchange name=NAME`) and start the workers: they "
            "declare it anew. See README.md, 'Broker choice'."
        )
    return ConfigError("\n".join(lines))


def is_precondition_failed(exc: BaseException) -> bool:
    return getattr(exc, "reply_code", None) == PRECONDITION_FAILED


def declare_broker_entities(cfg: Settings) -> None:
    """On RabbitMQ, declare the queues (and the delayed-delivery wiring) this config wants.

    Runs at worker start, before Celery declares the same things, so that a queue
    of another type already on the server stops the worker with what to do
    instead of Celery's traceback, and so that Celery's delay queues of another
    type stop it too (Celery would only log a warning, and countdown retries
    would then be routed to nowhere). A broker not reachable yet is left to
    Celery's own connection retries. Raises `ConfigError`.
    """
    url = cfg.broker_url
    if not is_amqp(url):
        return
    from worker.delivery.results import results_queue

    with Connection(url, connect_timeout=5) as conn:
        try:
            conn.ensure_connection(max_retries=1)
        except (OperationalError, OSError) as exc:
            log.warning("broker.unreachable_at_start", error=str(exc))
            return
        jobs = jobs_queue_for(cfg)
        try:
            channel = conn.default_channel
            jobs.bind(channel).declare()
            results_queue(cfg.results_queue, cfg.rabbitmq_queue_type).bind(channel).declare()
            if quorum_queues(cfg):
                declare_native_delayed_delivery_exchanges_and_queues(conn, "quorum")
                bind_queue_to_native_delayed_delivery_exchange(conn, jobs)
        except conn.channel_errors as exc:
            if is_precondition_failed(exc):
                raise queue_mismatch(cfg, exc) from None
            raise


app = StartprocCelery("startproc", include=["worker.tasks"])
app.conf.update(
    reliability_conf(cfg, cfg.jobs_queue),
    # not in reliability_conf: the benchmarks' no-op baseline stays on stock kombu
    broker_transport=transport_for(cfg.broker_url),
    task_routes={TASK_NAME: {"queue": cfg.jobs_queue, "routing_key": cfg.jobs_queue}},
    worker_hijack_root_logger=False,
    worker_consumer="worker.tasks:Consumer",
    # Celery's own entries plus the schedules file (STARTPROC_SCHEDULES), one slot = one start.
    beat_scheduler="worker.schedules.beat:Scheduler",
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
def _switch_interval(**_: Any) -> None:
    """Threads hand over the GIL sooner, so the consumer thread is not starved.

    With the default 5 ms, a pool thread that has work keeps Celery's consumer
    thread waiting, and jobs wait in the broker while threads sit idle.
    """
    sys.setswitchinterval(cfg.worker_switch_interval)


@signals.worker_init.connect
def _fail_fast(**_: Any) -> None:
    """Bad config stops the worker at start with the file, key and a suggestion."""
    try:
        cfg.require_broker()
        from worker.runtime import runtime

        runtime()
        from worker.broker.redis_policy import check_settings

        check_settings(cfg)  # an evicting Redis loses ledger entries: refused at start
        refuse_redis_cluster(cfg)
        declare_broker_entities(cfg)
        # before a prefork pool forks: its children inherit the exporters
        tracing.configure("startproc-worker", cfg.traces_file)
    except ConfigError as exc:
        raise SystemExit(f"startproc: configuration error:\n{exc}") from None


_beacons: list[Any] = []


@signals.worker_ready.connect
def _start_beacon(sender: Any = None, **_: Any) -> None:
    """The worker's liveness beacon in Redis (`worker.delivery.beacons`), read by the console."""
    from worker.broker.connections import shared_redis
    from worker.delivery.beacons import Beacon

    url = cfg.effective_redis_url()
    if not url or sender is None:
        return
    controller = getattr(sender, "controller", None)  # the WorkController (-c, --pool)
    concurrency = getattr(controller, "concurrency", None) or cfg.worker_concurrency
    info = {"pool": cfg.worker_pool, "concurrency": concurrency}
    _beacons.append(Beacon(shared_redis(url), str(sender.hostname), info).start())


@signals.worker_shutdown.connect
def _stop_beacon(**_: Any) -> None:
    while _beacons:
        _beacons.pop().stop()


@signals.beat_init.connect
def _beat_tracing(**_: Any) -> None:
    """Beat's sends (the schedules' slots) start traces of their own when exporting is on."""
    try:
        tracing.configure("startproc-beat", cfg.traces_file)
    except ConfigError as exc:
        raise SystemExit(f"startproc: configuration error:\n{exc}") from None


from worker import exporter  # noqa: E402  (no Celery in it: its hooks are connected here)

signals.worker_init.connect(exporter.on_worker_init, weak=False)
signals.worker_process_shutdown.connect(exporter.forget_dead_child, weak=False)
