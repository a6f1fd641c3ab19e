"""The sweeper re-drives undecided jobs and publishes stranded results, and nothing else."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis
from kombu import Connection

from tests.support.service import drain
from worker.delivery.inflight import InFlight
from worker.delivery.results import KombuPublisher, ResultStore
from worker.delivery.sweeper import sweep
from worker.models import Result


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


def test_jobs_of_a_worker_whose_heartbeat_expired_are_redriven_at_once(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """No waiting for the deadline (task time limit + lease + 60 s) or the broker's
    visibility timeout: the holder's liveness key is gone, so its jobs are re-driven now."""
    from worker.keys import alive_key

    results, inflight = store(redis_url, redis_client), InFlight(redis_client)
    later = time.time() + 600
    job = {"target": "t", "process": "p"}
    inflight.track("of-the-dead", job, later, holder="host:1")
    inflight.track("of-the-living", job, later, holder="host:2")
    inflight.track("decided", job, later, holder="host:1")
    results.record(Result(job_id="decided", status="created", instance_id="1"))
    redis_client.set(alive_key("host:2"), "1", ex=30)
    sent: list[list[dict[str, Any]]] = []
    report = sweep(results, inflight, sent.append, redrive_window=60)
    assert sent == [[{**job, "job_id": "of-the-dead"}]]
    assert report.redriven == 1 and report.orphans == 1 and report.cleared == 1
    assert redis_client.hgetall("startproc:inflight:holders") == {"of-the-living": "host:2"}
    assert sweep(results, inflight, sent.append, redrive_window=60).redriven == 0
    assert len(sent) == 1  # once: the re-driven copy has no holder until a worker takes it


def test_a_job_taken_over_by_a_live_worker_is_not_disowned(
    redis_url: str, redis_client: redis.Redis
) -> None:
    inflight = InFlight(redis_client)
    inflight.track("j", {"target": "t", "process": "p"}, time.time() + 600, holder="host:1")
    inflight.track("j", {"target": "t", "process": "p"}, time.time() + 600, holder="host:2")
    assert not inflight.disown("j", "host:1")
    assert inflight.disown("j", "host:2")


def test_dead_letters_older_than_the_retention_are_removed(
    redis_url: str, redis_client: redis.Redis
) -> None:
    from worker.delivery.dlq import DeadLetters

    results, inflight = store(redis_url, redis_client), InFlight(redis_client)
    dead = DeadLetters(redis_client)
    dead.add("old", {"target": "t", "process": "p"}, "ambiguous", None)
    dead.add("recent", {"target": "t", "process": "p"}, "ambiguous", None)
    redis_client.zadd("startproc:dlq:order", {"old": time.time() - 91 * 86400})
    report = sweep(results, inflight, lambda _: None, dead_letters=dead, dlq_retention=90 * 86400)
    assert report.dead_letters_expired == 1
    assert [e["job_id"] for e in dead.list()] == ["recent"] and dead.get("old") is None


def test_a_results_queue_nobody_consumes_is_warned_about(redis_client: redis.Redis) -> None:
    from structlog.testing import capture_logs

    from worker.delivery.sweeper import warn_results_backlog

    redis_client.lpush("startproc.results", *range(5))
    with capture_logs() as logs:
        assert warn_results_backlog(redis_client, "startproc.results", threshold=5) == 5
        assert warn_results_backlog(redis_client, "startproc.results", threshold=0) == 5
    assert logs == []
    redis_client.lpush("startproc.results", "one more")
    with capture_logs() as logs:
        assert warn_results_backlog(redis_client, "startproc.results", threshold=5) == 6
    [warning] = logs
    assert warning["event"] == "results.queue_backlog" and warning["log_level"] == "warning"
    assert warning["depth"] == 6 and "STARTPROC_RESULTS_QUEUE_WARN_DEPTH" in warning["message"]


def test_the_sweep_task_checks_the_results_backlog(
    redis_url: str, redis_client: redis.Redis, sandbox: Any, tmp_path: Path
) -> None:
    """Beat's sweep (the task's own function, run here in-process) is where the warning lives."""
    from structlog.testing import capture_logs

    from worker import tasks
    from worker.config import environment
    from worker.local import demo
    from worker.runtime import runtime

    env = {
        "STARTPROC_BROKER_URL": redis_url,
        "STARTPROC_REDIS_URL": redis_url,
        "STARTPROC_TARGETS": str(demo.write_targets(sandbox, tmp_path / "targets.toml")),
        "STARTPROC_RESULTS_QUEUE_WARN_DEPTH": "2",
        demo.SECRET_VAR: demo.DEMO_SECRET,
    }
    redis_client.lpush("startproc.results", "a", "b", "c")
    with environment(env):
        runtime.cache_clear()
        try:
            with capture_logs() as logs:
                tasks.sweep.run()
        finally:
            runtime.cache_clear()
    assert [e["depth"] for e in logs if e["event"] == "results.queue_backlog"] == [3]
