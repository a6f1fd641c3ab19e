"""The sweeper re-drives undecided jobs and publishes stranded results, and nothing else."""

from __future__ import annotations

import time
from typing import Any

import redis
from kombu import Connection

from tests.test_service import drain
from worker.inflight import InFlight
from worker.models import Result
from worker.results import KombuPublisher, ResultStore
from worker.sweeper import sweep


def store(redis_url: str, client: redis.Redis) -> ResultStore:
    return ResultStore(client, KombuPublisher(Connection(redis_url), "startproc.results"), 1)


def test_overdue_jobs_are_redriven_once_and_decided_ones_cleared(
    redis_url: str, redis_client: redis.Redis
) -> None:
    results, inflight = store(redis_url, redis_client), InFlight(redis_client)
    inflight.track("lost", {"target": "t", "process": "p"}, time.time() - 1)
    inflight.track("decided", {"target": "t", "process": "p"}, time.time() - 1)
    inflight.track("running", {"target": "t", "process": "p"}, time.time() + 600)
    results.record(Result(job_id="decided", status="created", instance_id="1"))
    sent: list[list[dict[str, Any]]] = []
    report = sweep(results, inflight, sent.append, redrive_window=60)
    assert report.redriven == 1 and report.cleared == 1
    assert sent == [[{"target": "t", "process": "p", "job_id": "lost"}]]
    again = sweep(results, inflight, sent.append, redrive_window=60)
    assert again.redriven == 0 and len(sent) == 1  # not re-sent before its new deadline
    assert inflight.size() == 2


def test_stranded_results_are_published_after_the_grace(
    redis_url: str, redis_client: redis.Redis
) -> None:
    results, inflight = store(redis_url, redis_client), InFlight(redis_client)
    results.record(Result(job_id="stranded", status="created", instance_id="1"))
    assert sweep(results, inflight, lambda _: None, outbox_grace=60).published == 0
    assert drain(redis_url) == []
    assert sweep(results, inflight, lambda _: None, outbox_grace=0).published == 1
    assert [m["job_id"] for m in drain(redis_url)] == ["stranded"]
    assert sweep(results, inflight, lambda _: None, outbox_grace=0).published == 0


def test_an_entry_under_a_task_id_is_cleared_by_the_jobs_own_result(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Workers before the one-identity fix registered a foreign job under its Celery task
    id and recorded its result under the job's own ``job_id``: not re-driven forever."""
    results, inflight = store(redis_url, redis_client), InFlight(redis_client)
    job = {"target": "t", "process": "p", "job_id": "foreign-7"}
    inflight.track("celery-task-1", job, time.time() - 1)
    results.record(Result(job_id="foreign-7", status="created", instance_id="1"))
    sent: list[list[dict[str, Any]]] = []
    report = sweep(results, inflight, sent.append)
    assert report.cleared == 1 and report.redriven == 0 and sent == []
    assert inflight.size() == 0
