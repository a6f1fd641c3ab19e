"""`worker.delivery.backlog` on a real Redis: queue depth and age, jobs in flight, dead
letters by kind,
worker heartbeats. Messages are published by the real producers (ours, a foreign Celery
app), never written by hand, except where the point is a message nobody can date."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from kombu import Connection

from tests.support.service import C8_JOB, run
from worker import keys, producer
from worker.config import environment
from worker.delivery import backlog
from worker.delivery.beacons import Beacon, beacon
from worker.delivery.dlq import DeadLetters
from worker.metrics import _queue_lists
from worker.runtime import Runtime
from worker.service import Delivery, RetryLater

QUEUE = "startproc.jobs"
JOB = {"target": "orders", "process": "order-process"}


@pytest.fixture
def broker(redis_url: str) -> Iterator[str]:
    """Our producers and a foreign app publish to this Redis (no worker consumes it)."""
    with environment({"STARTPROC_BROKER_URL": redis_url, "STARTPROC_REDIS_URL": redis_url}):
        yield redis_url


def measure(client: redis.Redis, seen: backlog.FirstSeen, now: float) -> backlog.QueueBacklog:
    return backlog.redis_queue_backlog(client, _queue_lists(QUEUE), seen, now=now)


def test_an_empty_queue_has_no_age(redis_client: redis.Redis) -> None:
    found = measure(redis_client, backlog.FirstSeen(), time.time())
    assert found == backlog.QueueBacklog(depth=0, oldest_age=0.0)


def test_the_oldest_job_is_aged_from_its_publish_header(
    broker: str, redis_client: redis.Redis
) -> None:
    before = time.time()
    producer.publish([producer.prepare(JOB)])
    time.sleep(0.01)
    after = time.time()
    producer.publish([producer.prepare(JOB), producer.prepare(JOB)])
    found = measure(redis_client, backlog.FirstSeen(), now=after + 100)
    assert found.depth == 3
    assert 100 <= found.oldest_age <= 100 + (after - before)  # the first one, not the last


def test_a_foreign_message_is_aged_by_its_jobs_enqueued_at(
    broker: str, redis_client: redis.Redis
) -> None:
    other = Celery("someone-else", broker=broker)
    job = {**JOB, "enqueued_at": "2030-01-01T00:00:00.000Z"}
    other.send_task("startproc.start_process", kwargs={"job": job}, queue=QUEUE)
    moment = 1893456000.0  # 2030-01-01T00:00:00Z
    found = measure(redis_client, backlog.FirstSeen(), now=moment + 7)
    assert (found.depth, found.oldest_age) == (1, 7.0)


def test_an_undatable_message_is_aged_from_when_a_scrape_first_saw_it(
    broker: str, redis_client: redis.Redis
) -> None:
    other = Celery("someone-else", broker=broker)
    other.send_task("startproc.start_process", kwargs={"job": JOB}, queue=QUEUE)
    seen = backlog.FirstSeen()
    assert measure(redis_client, seen, now=1000.0).oldest_age == 0
    assert measure(redis_client, seen, now=1030.0).oldest_age == 30  # still the same message
    redis_client.rpop(QUEUE)  # taken by a worker: the next one is new at the head
    other.send_task("startproc.start_process", kwargs={"job": JOB}, queue=QUEUE)
    assert measure(redis_client, seen, now=1040.0).oldest_age == 0


def test_a_priority_list_counts_and_ages_too(broker: str, redis_client: redis.Redis) -> None:
    with Connection(broker) as conn:
        queue = conn.SimpleQueue(QUEUE)
        queue.put({"n": 1}, priority=3, headers={backlog.PUBLISHED_AT: 500.0})
        queue.close()
    assert redis_client.llen(f"{QUEUE}\x06\x163") == 1  # kombu's list of priority 3
    producer.publish([producer.prepare(JOB)])
    found = measure(redis_client, backlog.FirstSeen(), now=600.0)
    assert (found.depth, found.oldest_age) == (2, 100.0)


def test_jobs_in_flight_from_first_arrival_until_decided(
    rt: Runtime,
    redis_client: redis.Redis,
    sandbox: Any,
) -> None:
    assert backlog.in_flight(redis_client) == (0, 0.0)
    sandbox.app("camunda8").faults.script([{"status": 503}] * 4)  # the in-call attempts run out
    outcome = rt.service.handle(C8_JOB, Delivery(job_id="slow-1"))
    assert isinstance(outcome, RetryLater)  # waiting for a Celery retry: still in flight
    first = redis_client.zscore(keys.INFLIGHT_RUNNING, "slow-1")
    assert first is not None
    count, age = backlog.in_flight(redis_client, now=float(first) + 60)
    assert (count, age) == (1, 60.0)
    assert run(rt, C8_JOB, job_id="slow-1", retries=1).status == "created"  # the retry
    assert backlog.in_flight(redis_client) == (0, 0.0)


def test_a_redelivery_keeps_the_first_arrival(rt: Runtime, redis_client: redis.Redis) -> None:
    redis_client.zadd(keys.INFLIGHT_RUNNING, {"j-9": 100.0})  # an earlier delivery took it
    rt.service.deliveries.arrive("j-9", {"target": "orders"}, 0, holder="")
    assert backlog.in_flight(redis_client, now=300.0) == (1, 200.0)


def test_dead_letters_are_counted_by_kind(redis_client: redis.Redis) -> None:
    dead = DeadLetters(redis_client)
    dead.add("j-1", {}, "exhausted", None)
    dead.add("j-2", {}, "ambiguous", None)
    dead.add("j-3", {}, "ambiguous", None)
    dead.add("j-3", {}, "exhausted", None)  # the same job again: moved, not counted twice
    dead.add("j-4", {}, "something new", None)
    assert dead.by_kind() == {"exhausted": 2, "ambiguous": 1, "other": 1}
    assert dead.remove("j-3") and not dead.remove("j-3")
    assert dead.by_kind() == {"exhausted": 1, "ambiguous": 1, "other": 1}
    assert dead.purge() == 3
    assert dead.by_kind() == {}


def test_entries_written_before_counting_are_recounted_once(redis_client: redis.Redis) -> None:
    dead = DeadLetters(redis_client)
    dead.add("j-1", {}, "exhausted", None)
    redis_client.hset(keys.DLQ, "old-1", '{"job_id": "old-1", "reason": "ambiguous"}')
    assert dead.by_kind() == {"exhausted": 1, "ambiguous": 1}
    assert redis_client.hgetall(keys.DLQ_KINDS) == {"exhausted": "1", "ambiguous": "1"}
    assert dead.by_kind(recount_limit=0) == {"exhausted": 1, "ambiguous": 1}  # now in step
    redis_client.hset(keys.DLQ, "old-2", '{"job_id": "old-2", "reason": "exhausted"}')
    assert dead.by_kind(recount_limit=0) == {"exhausted": 1, "ambiguous": 1, "other": 1}


def test_worker_heartbeats(redis_client: redis.Redis) -> None:
    """The console's beacons are the metrics' heartbeats: one writer per worker."""
    alive, age = backlog.workers(redis_client, alive_within=60)
    assert (alive, age) == (0, math.inf)
    first = Beacon(redis_client, "worker-a@host", {"pool": "threads"}).start()
    beacon(redis_client, "worker-b@host", {})
    redis_client.zadd(keys.WORKERS, {"gone@host": float(redis_client.time()[0]) - 600})
    deadline = time.monotonic() + 10
    while redis_client.zscore(keys.WORKERS, "worker-a@host") is None:
        assert time.monotonic() < deadline, "no heartbeat"
        time.sleep(0.01)
    alive, age = backlog.workers(redis_client, alive_within=60)
    assert alive == 2 and 0 <= age < 5
    first.stop()  # a clean stop says goodbye
    assert redis_client.zscore(keys.WORKERS, "worker-a@host") is None
    assert backlog.workers(redis_client, alive_within=60)[0] == 1
