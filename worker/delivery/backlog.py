"""The backlog as gauges: how many jobs wait, how long the oldest has waited, what is in flight.

Read at scrape time by `worker.metrics.RedisCollector`, with a bounded
amount of work whatever the backlog's size:

* **Redis broker**: per list of the jobs queue (kombu keeps one per priority
  step) one ``LLEN`` and one ``LINDEX -1`` (kombu pushes on the left and
  pops on the right, so the last element is the oldest), all in one round
  trip. The oldest message's age comes from the ``startproc_published_at``
  header our producers and retries stamp; a foreign message without it is
  dated by its job's ``enqueued_at``, else from when a scrape of this process
  first saw it at the head of the queue (a lower bound).
* **RabbitMQ**: a passive ``queue.declare`` gives the number of messages
  ready. The oldest message's age is *not* exported there: reading it means
  ``basic.get`` and a reject, which redelivers the message, counts a delivery
  against a quorum queue's limit and moves it; the management API's
  ``head_message_timestamp`` exists only for classic queues. The in-flight age
  and the alert on a backlog that does not drain cover RabbitMQ instead.
* **In flight**: jobs a worker took and has not decided (running, or waiting
  for a retry), from `worker.delivery.inflight.InFlight.running`: two commands.
* **Workers**: the beacons of `worker.delivery.beacons`: one ``ZRANGE``.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from prometheus_client.core import GaugeMetricFamily

from worker import keys
from worker.delivery.beacons import FRESH as ALIVE_WITHIN
from worker.delivery.dlq import KINDS, OTHER, DeadLetters
from worker.delivery.inflight import InFlight

PUBLISHED_AT = "startproc_published_at"
"""Message header: when the message was published (epoch seconds). Stamped by
`worker.celery_app.message_headers`; read here without importing Celery."""


@dataclass(frozen=True)
class QueueBacklog:
    depth: int
    oldest_age: float
    """Seconds the oldest waiting message has waited; 0 when none waits."""


class FirstSeen:
    """When this process first saw a message it cannot date at a queue's head."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[str, float]] = {}

    def since(self, where: str, tag: str, now: float) -> float:
        with self._lock:
            known = self._seen.get(where)
            if known is None or known[0] != tag:
                known = self._seen[where] = (tag, now)
            return known[1]


def redis_queue_backlog(
    broker: redis.Redis, lists: Sequence[str], seen: FirstSeen, now: float | None = None
) -> QueueBacklog:
    """Depth and oldest age of a kombu Redis queue (its lists: the queue and its priorities)."""
    now = time.time() if now is None else now
    pipe = broker.pipeline(transaction=False)
    for name in lists:
        pipe.llen(name)
        pipe.lindex(name, -1)
    answers = pipe.execute()
    depth, oldest = 0, now
    for name, length, raw in zip(lists, answers[0::2], answers[1::2], strict=True):
        depth += int(length)
        if raw is not None:
            oldest = min(oldest, message_time(raw, name, seen, now))
    return QueueBacklog(depth, max(now - oldest, 0.0) if depth else 0.0)


def message_time(raw: str | bytes, where: str, seen: FirstSeen, now: float) -> float:
    """When a kombu Redis message was published, as well as it can be told."""
    try:
        message = json.loads(raw)
        headers = message.get("headers") or {}
        stamped = headers.get(PUBLISHED_AT)
        if isinstance(stamped, int | float) and math.isfinite(stamped):
            return float(stamped)
        enqueued = _enqueued_at(message)
        if enqueued is not None:
            return enqueued
        tag = str((message.get("properties") or {}).get("delivery_tag") or raw[:64])
    except (ValueError, TypeError, AttributeError):
        tag = str(raw[:64])
    return seen.since(where, tag, now)


def _enqueued_at(message: dict[str, Any]) -> float | None:
    """The job's own ``enqueued_at``, from a Celery protocol 2 JSON body."""
    body = message.get("body")
    if not isinstance(body, str) or message.get("content-type") != "application/json":
        return None
    if (message.get("properties") or {}).get("body_encoding") == "base64":
        body = base64.b64decode(body).decode("utf-8", "replace")
    decoded = json.loads(body)
    kwargs = decoded[1] if isinstance(decoded, list) and len(decoded) > 1 else None
    job = kwargs.get("job") if isinstance(kwargs, dict) else None
    value = job.get("enqueued_at") if isinstance(job, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def amqp_queue_depth(url: str, queue: str, timeout: float = 2.0) -> int:
    """Messages ready in a RabbitMQ queue: a passive declare (creates and changes nothing)."""
    from kombu.connection import Connection

    kombu_connection: Any = Connection  # kombu has no annotations
    with kombu_connection(url, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1)
        _name, ready, _consumers = conn.default_channel.queue_declare(queue=queue, passive=True)
        return int(ready)


def in_flight(client: redis.Redis, now: float | None = None) -> tuple[int, float]:
    """(jobs taken by workers and not decided, seconds since the oldest was first taken)."""
    now = time.time() if now is None else now
    count, since = InFlight(client).running()
    return count, (max(now - since, 0.0) if since is not None and count else 0.0)


def workers(client: redis.Redis, alive_within: float) -> tuple[int, float]:
    """(workers that beat within ``alive_within`` s, seconds since the newest beat; inf if none)."""
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.zrange(keys.WORKERS, 0, -1, withscores=True)
    (seconds, micros), beats = pipe.execute()
    now = seconds + micros / 1e6
    ages = [now - float(score) for _node, score in beats]
    alive = sum(1 for age in ages if age <= alive_within)
    return alive, (max(min(ages), 0.0) if ages else math.inf)


# ---------------------------------------------------------------- as Prometheus gauges


def registry_gauges(client: redis.Redis, dead: DeadLetters) -> Iterator[GaugeMetricFamily]:
    """Dead letters by kind, jobs in flight, worker heartbeats: from the ledger's Redis."""
    kinds = GaugeMetricFamily(
        "startproc_dlq_jobs", "Jobs in the dead-letter store, by kind.", labels=["kind"]
    )
    counts = dead.by_kind()
    for kind in (*KINDS, OTHER):
        if kind in counts or kind in KINDS:
            kinds.add_metric([kind], counts.get(kind, 0))
    yield kinds
    count, age = in_flight(client)
    yield gauge(
        "startproc_jobs_inflight",
        "Jobs a worker took and has not decided yet (running, or waiting for a retry).",
        count,
    )
    yield gauge(
        "startproc_jobs_inflight_oldest_age_seconds",
        "Seconds since a worker first took the oldest job still in flight; 0 when none.",
        age,
    )
    alive, newest = workers(client, ALIVE_WITHIN)
    yield gauge(
        "startproc_workers_alive",
        f"Worker processes whose heartbeat is at most {ALIVE_WITHIN:g} s old.",
        alive,
    )
    yield gauge(
        "startproc_worker_heartbeat_age_seconds",
        "Seconds since the newest worker heartbeat (+Inf when no worker ever beat).",
        newest,
    )


def queue_gauges(
    queue: str,
    lists: Sequence[str],
    seen: FirstSeen,
    broker: redis.Redis | None,
    amqp_url: str | None,
) -> Iterator[GaugeMetricFamily]:
    """The jobs queue's depth (Redis or RabbitMQ) and its oldest job's age (Redis)."""
    doc = "Start jobs waiting in the broker's jobs queue (RabbitMQ: messages ready)."
    if broker is not None:
        found = redis_queue_backlog(broker, lists, seen)
        yield gauge("startproc_jobs_queue_depth", doc, found.depth, queue=queue)
        yield gauge(
            "startproc_jobs_oldest_age_seconds",
            "Seconds the oldest job waiting in the jobs queue has waited (Redis broker); "
            "0 when the queue is empty.",
            found.oldest_age,
            queue=queue,
        )
    elif amqp_url:
        yield gauge(
            "startproc_jobs_queue_depth", doc, amqp_queue_depth(amqp_url, queue), queue=queue
        )


def gauge(name: str, doc: str, value: float, **labels: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), float(value))
    return family
