"""Results: recorded once per job, then published to the durable results queue.

Recording and publishing are two steps joined by an outbox, so a crash
between "instance created" and "result published" cannot lose the result:

1. `record` stores the result under its job id **only if none exists** (the
   first outcome of a job wins; a redelivered job finds it), indexes it by
   idempotency key, appends it to a capped log for ``startproc results``, and
   puts the job id in the outbox (scored by time), all in one Lua script.
2. `publish_pending` sends it to the results queue and removes it from the
   outbox. A redelivered job, or the sweeper, calls it again for leftovers.

When the broker is the same Redis as the results index (the default), step
2 is one Lua script too: the message is pushed onto the queue and the outbox
entry removed atomically, so every job's result is published exactly once.
With another broker (RabbitMQ, or a second Redis), a crash after the broker
accepted the message but before the outbox entry was removed sends that
result a second time with the same ``job_id``; consumers can drop a
repeated ``job_id``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import redis
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.pools import producers

from worker import keys
from worker.config import settings
from worker.delivery.redis_batch import ScriptCall
from worker.models import Result

Publisher = Callable[[dict[str, Any]], None]
RESULTS_LOG_MAXLEN = 100_000

_RECORD = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[3])) then return 0 end
if ARGV[9] ~= '' then
  -- the broker is this Redis: publish now, in the same atomic step (no outbox)
  redis.call('LPUSH', ARGV[10], ARGV[9])
  redis.call('LPUSH', ARGV[11], '1')
  redis.call('EXPIRE', ARGV[11], 300)
else
  redis.call('ZADD', KEYS[2], ARGV[8], ARGV[2])
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'result', ARGV[1])
if ARGV[4] ~= '' then redis.call('SET', ARGV[4], ARGV[2], 'EX', tonumber(ARGV[3])) end
if ARGV[5] ~= '' then
  redis.call('HINCRBY', ARGV[5], ARGV[6], 1)
  redis.call('EXPIRE', ARGV[5], tonumber(ARGV[3]))
end
-- outcomes per minute and target, for the console's overview (worker.delivery.outcomes)
redis.call('HINCRBY', ARGV[12], ARGV[13], 1)
redis.call('EXPIRE', ARGV[12], tonumber(ARGV[14]))
return 1
"""


def results_queue(name: str, queue_type: str | None = None) -> Queue:
    """The durable results queue, addressed through the default exchange.

    The default exchange routes by queue name on AMQP and writes straight to
    the list on Redis, so no binding has to survive: kombu remembers Redis
    bindings in process memory, and after a Redis restart without data it
    would route results to nowhere. It also routes to a queue of any type.

    ``queue_type`` (default ``STARTPROC_RABBITMQ_QUEUE_TYPE``): ``quorum`` declares
    a RabbitMQ quorum queue, ``classic`` a plain durable one. Redis ignores
    queue arguments. A declaration must match the queue on the server exactly,
    so everything that declares the results queue builds it here.
    """
    kind = queue_type or settings().rabbitmq_queue_type
    arguments = {"x-queue-type": "quorum"} if kind == "quorum" else None
    return Queue(name, Exchange(""), routing_key=name, durable=True, queue_arguments=arguments)


class KombuPublisher:
    """Publishes result dicts as persistent JSON messages through kombu's producer pool.

    kombu, not Celery: any process with a broker URL can publish or consume,
    and the same code serves Redis and RabbitMQ.
    """

    def __init__(self, connection: Connection, queue_name: str) -> None:
        self.connection = connection
        self.queue = results_queue(queue_name)

    def __call__(self, result: dict[str, Any]) -> None:
        with producers[self.connection].acquire(block=True, timeout=30) as producer:
            producer.publish(
                result,
                serializer="json",
                exchange="",
                routing_key=self.queue.name,
                declare=[self.queue],
                delivery_mode=2,
                retry=True,
                retry_policy={"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5},
            )


_PUBLISH_ATOMIC = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('LPUSH', KEYS[3], '1')
redis.call('EXPIRE', KEYS[3], 300)
return 1
"""


def kombu_redis_envelope(body: str, queue: str) -> str:
    """The message as kombu's Redis transport stores it (what consumers decode).

    ``body`` is the result as recorded (compact JSON), wrapped as it is, not
    decoded and dumped again; the envelope around it is dumped once per queue.
    """
    before, between, after = _envelope_parts(queue)
    return f"{before}{base64.b64encode(body.encode()).decode()}{between}{keys.unique_id()}{after}"


_BODY, _TAG = "@@body@@", "@@delivery-tag@@"


@lru_cache(maxsize=16)
def _envelope_parts(queue: str) -> tuple[str, str, str]:
    """The envelope's JSON split where the body and the delivery tag go (neither needs
    escaping: base64 and a UUID)."""
    text = json.dumps(
        {
            "body": _BODY,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {},
            "properties": {
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": _TAG,
            },
        }
    )
    before, rest = text.split(_BODY)
    between, after = rest.split(_TAG)
    return before, between, after


def outcome_field(result: Result) -> str:
    """``target|status`` of the per-minute outcome counters; ``(unknown)`` as in the metrics.

    An invalid job may name any target: only a result that reached an engine
    names a configured one, so the hash stays as small as the targets file.
    """
    target = result.target if result.engine and result.target else "(unknown)"
    return f"{target}|{result.status}"


class ResultStore:
    """The results index in Redis, with the outbox in front of the queue."""

    def __init__(
        self,
        client: redis.Redis,
        publisher: Publisher,
        retention_days: int,
        atomic_queue: str | None = None,
    ) -> None:
        """``atomic_queue``: the results queue's name when the broker is this very Redis."""
        self.client = client
        self.publish = publisher
        self.atomic_queue = atomic_queue
        self._publish_atomic = client.register_script(_PUBLISH_ATOMIC)
        self.ttl = retention_days * 86400
        self._record = client.register_script(_RECORD)

    def record(self, result: Result, publish_now: bool = False) -> bool:
        """Store the job's first result and queue it for publishing, atomically.

        ``publish_now`` (only with ``atomic_queue``) also pushes it onto the
        results queue in the same script. False when the job already had a
        result (a redelivery or a race).
        """
        return bool(self.record_call(result, publish_now).run())

    def record_call(self, result: Result, publish_now: bool = False) -> ScriptCall:
        """`record` as a script call, to send in a `Batch` with other steps (its answer: 0/1)."""
        body = result.to_json()
        envelope = ""
        if publish_now and self.atomic_queue:
            envelope = kombu_redis_envelope(body, self.atomic_queue)
        by_key = (
            keys.result_by_idempotency_key(result.target, result.idempotency_key)
            if result.idempotency_key and result.target
            else ""
        )
        batch = keys.batch_counters(result.batch_id) if result.batch_id else ""
        now = time.time()
        return ScriptCall(
            self._record,
            [keys.result_key(result.job_id), keys.OUTBOX, keys.RESULTS_LOG],
            [
                body,
                result.job_id,
                self.ttl,
                by_key,
                batch,
                result.status,
                RESULTS_LOG_MAXLEN,
                now,
                envelope,
                self.atomic_queue or "",
                keys.result_waiters(result.job_id),
                keys.outcomes_minute(int(now // 60)),
                outcome_field(result),
                keys.OUTCOMES_TTL,
            ],
        )

    def publish_after_record(self, job_id: str, recorded: bool) -> None:
        """After ``record_call(publish_now=True)``: publish what its script did not.

        On a Redis broker the script published a new result itself; with another
        broker, or when the job already had a result (a redelivery), whatever is
        still in the outbox goes out now.
        """
        if not recorded or not self.atomic_queue:
            self.publish_pending(job_id)

    def publish_pending(self, job_id: str) -> bool:
        """Publish the job's result if it is still in the outbox; True if it was sent now."""
        if self.client.zscore(keys.OUTBOX, job_id) is None:
            return False
        if self.atomic_queue:
            raw = self.client.get(keys.result_key(job_id))
            if raw is None:
                self.client.zrem(keys.OUTBOX, job_id)
                return False
            envelope = kombu_redis_envelope(str(raw), self.atomic_queue)
            keys_ = [keys.OUTBOX, self.atomic_queue, keys.result_waiters(job_id)]
            return bool(self._publish_atomic(keys=keys_, args=[job_id, envelope]))
        raw = self.client.get(keys.result_key(job_id))
        if raw is None:
            self.client.zrem(keys.OUTBOX, job_id)
            return False
        self.publish(json.loads(raw))
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(keys.OUTBOX, job_id)
        pipe.lpush(keys.result_waiters(job_id), "1")
        pipe.expire(keys.result_waiters(job_id), 300)
        pipe.execute()
        return True

    def pending(self, older_than: float = 0.0) -> list[str]:
        """Job ids recorded but not published, for at least ``older_than`` seconds."""
        cutoff = time.time() - older_than
        ids: list[str] = self.client.zrangebyscore(keys.OUTBOX, "-inf", cutoff)  # type: ignore[assignment]
        return ids

    def get(self, job_id: str) -> Result | None:
        raw = self.client.get(keys.result_key(job_id))
        return Result.model_validate_json(raw) if raw else None

    def lookup(self, job_id: str) -> tuple[Result | None, bool]:
        """The job's result, and whether the job is known at all (one round trip).

        Known: it has a result, or it is in flight -- noted by our producers
        before they sent it, or by a worker that took it. A job id that is
        neither was never enqueued through our producers (or its result
        expired after the retention period).
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.get(keys.result_key(job_id))
        pipe.hexists(keys.INFLIGHT, job_id)
        raw, in_flight = pipe.execute()
        if raw:
            return Result.model_validate_json(raw), True
        return None, bool(in_flight)

    def job_ids_starting(self, prefix: str, limit: int = 10) -> list[str]:
        """Known job ids that start with ``prefix`` (at most ``limit``, sorted).

        SCANs the results index and the in-flight registry: for a person
        pasting a shortened id, not for hot paths.
        """
        literal = keys.glob_literal(prefix)
        start = len(keys.result_key(""))
        found: set[str] = set()
        for name in self.client.scan_iter(keys.result_key(literal) + "*", count=1000):
            found.add(str(name)[start:])
            if len(found) >= limit:
                break
        for job_id, _ in self.client.hscan_iter(keys.INFLIGHT, match=literal + "*", count=1000):
            found.add(str(job_id))
        return sorted(found)[:limit]

    def get_by_key(self, key: str, target: str | None = None) -> Result | None:
        """The result of the job that used ``key``; without ``target``, under any target.

        The any-target search SCANs the index; give the target for one exact read.
        """
        if target:
            job_id = self.client.get(keys.result_by_idempotency_key(target, key))
            return self.get(str(job_id)) if job_id else None
        suffix = f":{key}"
        prefix = keys.result_by_idempotency_key("", "")[:-1]
        for match in self.client.scan_iter(keys.result_by_key_any_target(key), count=1000):
            name = str(match)
            target_part = name[len(prefix) : -len(suffix)]
            if ":" not in target_part:  # target names have no colon; "a:b" is not key "b"
                job_id = self.client.get(name)
                return self.get(str(job_id)) if job_id else None
        return None

    def wait(self, job_id: str, timeout: float) -> Result | None:
        """Block until the job's result is published, or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.get(job_id)
            remaining = deadline - time.monotonic()
            if result is not None or remaining <= 0:
                return result
            # Short blocking slices: well under the client's socket timeout, and a
            # result recorded between get() and blpop() is seen on the next turn.
            self.client.blpop([keys.result_waiters(job_id)], timeout=min(remaining, 2.0))

    def recent(self, count: int = 20) -> list[Result]:
        entries: list[Any] = self.client.xrevrange(keys.RESULTS_LOG, count=count)  # type: ignore[assignment]
        return [Result.model_validate_json(f["result"]) for _id, f in reversed(entries)]

    def follow(self, last_id: str = "$", block_ms: int = 1000) -> Iterator[Result | None]:
        """Yield results as they are recorded; None on each idle ``block_ms`` tick."""
        while True:
            batch: list[Any] = self.client.xread(  # type: ignore[assignment]
                {keys.RESULTS_LOG: last_id}, block=block_ms, count=100
            )
            if not batch:
                yield None
                continue
            for _stream, entries in batch:
                for entry_id, fields in entries:
                    last_id = entry_id
                    yield Result.model_validate_json(fields["result"])
