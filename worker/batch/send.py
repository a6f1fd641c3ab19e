"""Publishing a batch: chunks of jobs on one broker connection, a few round trips per chunk.

`worker.producer.publish` already sends on one connection; a batch also
needs, per chunk:

* on Redis, the chunk's messages built from one template
  (`worker.batch.envelope`: ``app.send_task`` runs once per chunk, for a
  placeholder job) and pushed in one ``LPUSH``; the chunk's in-flight notes
  in one ``HSET`` and one ``ZADD``. Other brokers (RabbitMQ), or a Redis
  connection that would replay a failed command, publish job by job through
  ``app.send_task`` on the one connection (``argsrepr``/``kwargsrepr`` given
  and the queue declared once: Celery would otherwise ``saferepr`` every
  job's variables and re-check the queue per message);
* a look-up of each row's key in the results index, so a re-run of a file
  (or of the rest of it after Ctrl-C) does not re-send rows already started
  (``created``/``duplicate``). Rows that *failed* are sent again: the ledger
  lets a failed key be retried and never a succeeded one. Rows without any
  result yet (still queued from the run before) are sent again too; the
  ledger answers the second copy ``duplicate``.

Every send gets a fresh job id: a message re-sent by many runs must not look
like one message redelivered many times (the worker's poison-message count).

Ctrl-C while a chunk is being published is held until the chunk is out, so
every chunk is sent whole or not at all; a second Ctrl-C stops at once
(and the idempotency keys still make a re-run safe).
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

from worker import keys
from worker.batch.envelope import Recorder, Template, TemplateError, record
from worker.batch.outgoing import Outgoing
from worker.producer import register, register_payloads


class InterruptGuard:
    """Defers the first SIGINT to the next `checkpoint` (main thread only; elsewhere a no-op)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def checkpoint(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)


DONE = ("created", "duplicate")


def earlier_answers(client: redis.Redis | None, target: str, row_keys: list[str]) -> dict[str, str]:
    """Key -> job id, for the keys whose latest result started (or found) an instance.

    Two MGETs per chunk: key -> job id, then job id -> result.
    """
    if client is None or not row_keys:
        return {}
    ids: list[Any] = client.mget([keys.result_by_idempotency_key(target, k) for k in row_keys])
    found = {k: str(j) for k, j in zip(row_keys, ids, strict=True) if j}
    if not found:
        return {}
    results: list[Any] = client.mget([keys.result_key(j) for j in found.values()])
    answers = {}
    for (key, job_id), raw in zip(found.items(), results, strict=True):
        if raw and json.loads(raw).get("status") in DONE:
            answers[key] = job_id
    return answers


class Sender:
    """One connection and one producer for the whole batch."""

    def __init__(
        self, broker_url: str, queue: str, client: redis.Redis | None, target: str, batch_id: str
    ) -> None:
        self.broker_url = broker_url
        self.queue = queue
        self.client = client
        self.target = target
        self.kwargsrepr = f"{{'job': <batch {batch_id}>}}"  # what Celery shows: never variables
        self._stack = contextlib.ExitStack()
        self.producer: Any = None
        self.recorder: Recorder | None = None  # None: job by job through send_task

    def __enter__(self) -> Sender:
        from worker.broker.redis_policy import check_settings
        from worker.celery_app import app
        from worker.config import settings

        check_settings(settings(), self.broker_url)  # as every producer: no evicting Redis
        self.app = app
        connection = self._stack.enter_context(app.connection_for_write(self.broker_url))
        connection.ensure_connection(max_retries=3)
        self.producer = app.amqp.Producer(connection)
        self.producer.maybe_declare(app.amqp.queues[self.queue])
        channel = self.producer.channel
        # kombu's own test for pushing many messages in one pipeline: no automatic retry
        # that could push a chunk twice (a connection with retry_on_error, say)
        if isinstance(channel, kombu_redis.Channel) and getattr(
            channel, "supports_batch_publish", False
        ):
            self.recorder = Recorder(channel)
            try:
                self._template()
            except TemplateError:
                self.recorder = None
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def _template(self) -> Template:
        from worker.celery_app import TASK_NAME

        assert self.recorder is not None
        options = {"argsrepr": "()", "kwargsrepr": self.kwargsrepr}
        return record(self.app, self.recorder, TASK_NAME, self.queue, **options)

    def send(self, jobs: list[Outgoing]) -> list[tuple[str, bool]]:
        """Publish the jobs whose rows were not started before; per job (answering id, earlier)."""
        earlier = earlier_answers(self.client, self.target, [job.key for job in jobs])
        fresh = [job for job in jobs if job.key not in earlier]
        if fresh:
            if self.recorder is None:
                self._send_one_by_one([json.loads(job.payload) for job in fresh])
            else:
                self._send_chunk(fresh)
        answers: list[tuple[str, bool]] = []
        for job in jobs:
            previous = earlier.get(job.key)
            answers.append((job.job_id, False) if previous is None else (previous, True))
        return answers

    def _send_chunk(self, jobs: list[Outgoing]) -> None:
        """Note the jobs in flight, then push all their messages in one round trip."""
        register_payloads({job.job_id: job.payload for job in jobs}, self.client)
        template = self._template()  # this chunk's publish time and trace context
        messages = template.messages(jobs)
        with self.producer.channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            template.push(pipe, messages)
            pipe.execute()

    def _send_one_by_one(self, jobs: list[dict[str, Any]]) -> None:
        from worker.celery_app import TASK_NAME

        register(jobs, self.client)
        batch = getattr(self.producer, "batch", None)  # kombu >= 5.7: a pipeline on Redis
        with batch(max_size=len(jobs)) if batch is not None else contextlib.nullcontext():
            for job in jobs:
                self.app.send_task(
                    TASK_NAME,
                    kwargs={"job": job},
                    task_id=job["job_id"],
                    queue=self.queue,
                    routing_key=self.queue,
                    producer=self.producer,
                    declare=[],
                    argsrepr="()",
                    kwargsrepr=self.kwargsrepr,
                )


def chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
