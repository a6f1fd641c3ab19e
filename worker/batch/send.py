"""Publishing a batch: chunks of jobs on one broker connection, one round trip per chunk.

`worker.producer.publish` already sends on one connection; a batch also
needs, per chunk:

* kombu's ``Producer.batch()`` (kombu >= 5.7): on Redis the chunk's LPUSHes go
  out as one pipeline instead of one round trip per job (other transports,
  or an older kombu, publish one by one on the same connection);
* ``argsrepr``/``kwargsrepr`` given and the queue declared once: Celery would
  otherwise ``saferepr`` every job's variables and re-check the queue per
  message, which costs more than the send itself;
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

from worker import keys
from worker.producer import register


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

    Two pipelined round trips per chunk: key -> job id, then job id -> result.
    """
    if client is None or not row_keys:
        return {}
    pipe = client.pipeline(transaction=False)
    for key in row_keys:
        pipe.get(keys.result_by_idempotency_key(target, key))
    found = {k: str(j) for k, j in zip(row_keys, pipe.execute(), strict=True) if j}
    if not found:
        return {}
    for job_id in found.values():
        pipe.get(keys.result_key(job_id))
    answers = {}
    for (key, job_id), raw in zip(found.items(), pipe.execute(), strict=True):
        if raw and json.loads(raw).get("status") in DONE:
            answers[key] = job_id
    return answers


class Sender:
    """One connection and one producer for the whole batch."""

    def __init__(self, broker_url: str, queue: str, client: redis.Redis | None) -> None:
        self.broker_url = broker_url
        self.queue = queue
        self.client = client
        self._stack = contextlib.ExitStack()
        self.producer: Any = None

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
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def _batch(self, size: int) -> contextlib.AbstractContextManager[Any]:
        batch = getattr(self.producer, "batch", None)
        return batch(max_size=max(size, 1)) if batch is not None else contextlib.nullcontext()

    def send(self, jobs: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        """Publish the jobs whose rows were not started before; per job (answering id, earlier)."""
        from worker.celery_app import TASK_NAME

        target = str(jobs[0]["target"]) if jobs else ""
        earlier = earlier_answers(self.client, target, [job["idempotency_key"] for job in jobs])
        answers: list[tuple[str, bool]] = []
        register([job for job in jobs if job["idempotency_key"] not in earlier], self.client)
        with self._batch(len(jobs) - len(earlier)):
            for job in jobs:
                previous = earlier.get(job["idempotency_key"])
                if previous is not None:
                    answers.append((previous, True))
                    continue
                self.app.send_task(
                    TASK_NAME,
                    kwargs={"job": job},
                    task_id=job["job_id"],
                    queue=self.queue,
                    routing_key=self.queue,
                    producer=self.producer,
                    declare=[],
                    argsrepr="()",
                    kwargsrepr=f"{{'job': <batch {job.get('batch_id')}>}}",
                )
                answers.append((job["job_id"], False))
        return answers


def chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
