"""worker.metrics: the job counters, the Redis gauges, multiprocess mode and the exporter.

Counters are process-wide, so every assertion is on a difference (before ->
after), never on an absolute value another test could have moved.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from worker import keys, metrics
from worker.dlq import DeadLetters
from worker.models import ErrorInfo, Result, utcnow

REPO = Path(__file__).resolve().parents[1]


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` of a Prometheus text exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def scrape(registry: CollectorRegistry | None = None) -> str:
    return metrics.render(registry or metrics.registry_for_scrape()).decode()


def result(**fields: object) -> Result:
    now = utcnow()
    base: dict[str, object] = {
        "job_id": "j-1",
        "target": "orders",
        "engine": "camunda8",
        "status": "created",
        "enqueued_at": now - timedelta(seconds=1.5),
        "finished_at": now,
    }
    base.update(fields)
    return Result.model_validate(base)


# ---------------------------------------------------------------- counters


def test_a_finished_job_counts_once_with_its_latency() -> None:
    labels = {"target": "orders", "engine": "camunda8"}
    before = scrape()
    metrics.job_finished(result())
    metrics.job_finished(result(), first=False)  # a redelivery: not a new outcome
    after = scrape()

    def delta(name: str, **extra: str) -> float:
        return value(after, name, **labels, **extra) - value(before, name, **labels, **extra)

    assert delta("startproc_starts_total", status="created") == 1
    assert delta("startproc_start_latency_seconds_count") == 1
    assert delta("startproc_start_latency_seconds_sum") == pytest.approx(1.5, abs=0.01)
    assert delta("startproc_start_latency_seconds_bucket", le="1.0") == 0
    assert delta("startproc_start_latency_seconds_bucket", le="2.5") == 1


def test_an_invalid_job_is_labelled_unknown_not_by_what_it_claims() -> None:
    """An invalid job may name any target: labels must not grow with what producers send."""
    before = scrape()
    bad = result(
        target="no-such-target-" + "x" * 100,
        engine=None,
        status="failed",
        enqueued_at=None,
        error=ErrorInfo(kind="invalid", message="bad"),
    )
    metrics.job_finished(bad)
    after = scrape()
    labels = {"target": "(unknown)", "engine": "(unknown)", "status": "failed"}
    assert value(after, "startproc_starts_total", **labels) == (
        value(before, "startproc_starts_total", **labels) + 1
    )
    assert "no-such-target" not in after


def test_retries_and_ambiguous_outcomes_count_by_target() -> None:
    before = scrape()
    metrics.in_call_retry("billing")
    metrics.in_call_retry("billing")
    metrics.ambiguous_outcome("billing")
    after = scrape()
    for name, expected in (("startproc_retries_total", 2), ("startproc_ambiguous_total", 1)):
        gained = value(after, name, target="billing") - value(before, name, target="billing")
        assert gained == expected


# ---------------------------------------------------------------- Redis gauges


@pytest.fixture
def collector(redis_url: str) -> Iterator[metrics.RedisCollector]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield metrics.RedisCollector(lambda: client, "startproc.jobs", lambda: client)
    client.close()


def gauges(collector: metrics.RedisCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return metrics.render(registry).decode()


def test_backlog_gauges_read_redis_at_scrape_time(
    collector: metrics.RedisCollector, redis_client: redis.Redis
) -> None:
    empty = gauges(collector)
    assert value(empty, "startproc_redis_up") == 1
    for name in ("startproc_dlq_size", "startproc_outbox_size", "startproc_ledger_size"):
        assert value(empty, name) == 0
    assert value(empty, "startproc_jobs_queue_depth", queue="startproc.jobs") == 0

    DeadLetters(redis_client).add("j-1", {"target": "orders"}, "exhausted", None)
    redis_client.zadd(keys.OUTBOX, {"j-2": 1.0, "j-3": 2.0})
    for n in range(3):
        redis_client.hset(keys.ledger_key("orders", f"k-{n}"), "state", "SUCCEEDED")
    redis_client.lpush("startproc.jobs", "a", "b")
    redis_client.lpush("startproc.jobs\x06\x163", "c")  # kombu's list for priority 3

    full = gauges(collector)
    assert value(full, "startproc_dlq_size") == 1
    assert value(full, "startproc_outbox_size") == 2
    assert value(full, "startproc_ledger_size") == 3
    assert value(full, "startproc_jobs_queue_depth", queue="startproc.jobs") == 3


def test_ledger_size_is_sampled_on_large_databases(
    collector: metrics.RedisCollector, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "EXACT_LEDGER_LIMIT", 100)
    pipe = redis_client.pipeline(transaction=False)
    for n in range(1500):
        pipe.set(keys.ledger_key("orders", f"k-{n}"), 1)
    for n in range(500):
        pipe.set(f"other:{n}", 1)
    pipe.execute()
    estimate = value(gauges(collector), "startproc_ledger_size")
    # 256 samples of a 75 % share: +-20 % is about seven standard deviations.
    assert 1500 * 0.8 <= estimate <= 1500 * 1.2


def test_a_redis_outage_is_a_gauge_not_a_failed_scrape() -> None:
    def down() -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)

    text = gauges(metrics.RedisCollector(down, "startproc.jobs"))
    assert value(text, "startproc_redis_up") == 0
    assert "startproc_dlq_size" not in text


def test_queue_depth_needs_a_redis_broker() -> None:
    assert metrics.broker_redis_url("amqp://guest@localhost//") is None
    assert metrics.broker_redis_url("redis://localhost:6379/0") == "redis://localhost:6379/0"


# ---------------------------------------------------------------- multiprocess mode, exporter


def test_multiprocess_mode_merges_the_counters_of_every_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With prefork, each pool child counts in its own files; one scrape adds them up."""
    code = "import worker.metrics as m; m.in_call_retry('orders'); m.ambiguous_outcome('orders')"
    for _child in range(2):
        python(code, {metrics.MULTIPROC_ENV: str(tmp_path)})
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    text = scrape(metrics.registry_for_scrape())
    assert value(text, "startproc_retries_total", target="orders") == 2
    assert value(text, "startproc_ambiguous_total", target="orders") == 2


def test_exporter_serves_counters_and_gauges(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.config import settings

    monkeypatch.setenv("STARTPROC_BROKER_URL", redis_url)
    monkeypatch.setenv("STARTPROC_REDIS_URL", redis_url)
    settings.cache_clear()
    try:
        server = metrics.start_exporter(0, addr="127.0.0.1")
        assert server is not None
        port = server.server_address[1]
        try:
            metrics.in_call_retry("exported")
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            assert value(text, "startproc_retries_total", target="exported") >= 1
            assert value(text, "startproc_redis_up") == 1
            # The same port again cannot be bound: logged, and the worker goes on.
            assert metrics.start_exporter(port, addr="127.0.0.1") is None
        finally:
            server.shutdown()
            server.server_close()
    finally:
        settings.cache_clear()


# ---------------------------------------------------------------- prefork: automatic multiprocess

FORKING = """
import os
import worker.metrics as m
made = m.enable_multiprocess()
for _child in range(2):  # like a prefork pool: children forked after the switch count
    pid = os.fork()
    if pid == 0:
        m.in_call_retry("orders")
        os._exit(0)
    os.waitpid(pid, 0)
print("--- made:", made)  # after the log lines on stdout
print(m.render(m.registry_for_scrape()).decode())
"""


def python(code: str, env: dict[str, str]) -> str:
    """The stdout of ``code`` in a fresh interpreter (this repo importable, ``env`` added)."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **env}
    done = subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_forking(env: dict[str, str]) -> tuple[str, str]:
    """`FORKING`: (the directory it made or "None", its scrape)."""
    made, _, text = python(FORKING, env).partition("--- made: ")[2].partition("\n")
    return made, text


def test_a_private_multiprocess_dir_is_made_before_forking_and_removed_at_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    made, text = run_forking({})
    assert Path(made).name.startswith(metrics.MULTIPROC_PREFIX)
    assert value(text, "startproc_retries_total", target="orders") == 2  # both children's
    assert not Path(made).exists()  # removed when the process that made it exited


def test_a_multiprocess_dir_the_user_set_is_used_and_kept(tmp_path: Path) -> None:
    made, text = run_forking({metrics.MULTIPROC_ENV: str(tmp_path)})
    assert made == "None"
    assert value(text, "startproc_retries_total", target="orders") == 2
    assert sorted(p.name.split("_")[0] for p in tmp_path.iterdir()) == ["counter", "counter"]


@pytest.mark.parametrize(
    ("pool", "forks"),
    [("prefork", True), ("processes", True), ("threads", False), ("solo", False), ("nope", False)],
)
def test_only_a_forking_pool_needs_multiprocess_mode(pool: str, forks: bool) -> None:
    assert metrics.forks_children(pool) is forks


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_the_worker_init_hook_switches_only_a_prefork_worker(
    pool: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads: nothing changes. Prefork: the variable is set before the pool would fork."""
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    code = (
        "import os, types, worker.metrics as m\n"
        f"m._exporter_on_worker_init(sender=types.SimpleNamespace(pool_cls={pool!r}))\n"
        "print('--- dir:', os.environ.get(m.MULTIPROC_ENV))\n"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"STARTPROC_BROKER_URL": redis_url, "STARTPROC_METRICS_PORT": str(port)}
    path = python(code, env).partition("--- dir: ")[2].strip()
    if pool == "threads":
        assert path == "None"
    else:
        assert Path(path).name.startswith(metrics.MULTIPROC_PREFIX)
        assert not Path(path).exists()


def test_a_killed_workers_multiprocess_dir_is_removed_by_the_next_one(tmp_path: Path) -> None:
    """SIGKILL skips the exit hook; the next worker to make a directory removes the orphan."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f"{metrics.MULTIPROC_PREFIX}{dead.pid}-abc123"
    orphan.mkdir()
    (orphan / "counter_1.db").write_bytes(b"\0" * 16)
    live = tmp_path / f"{metrics.MULTIPROC_PREFIX}{os.getpid()}-def456"
    live.mkdir()
    unrelated = tmp_path / f"{metrics.MULTIPROC_PREFIX}notapid"
    unrelated.mkdir()
    assert metrics.remove_stale_multiproc_dirs(str(tmp_path)) == [str(orphan)]
    assert not orphan.exists() and live.exists() and unrelated.exists()


def test_the_private_dir_is_named_after_the_worker_that_made_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    made, _ = run_forking({})
    owner = Path(made).name.removeprefix(metrics.MULTIPROC_PREFIX).split("-", 1)[0]
    assert owner.isdigit() and int(owner) != os.getpid()  # the child python's pid


def test_the_results_queue_depth_is_a_gauge(
    collector: metrics.RedisCollector, redis_client: redis.Redis
) -> None:
    """The results list has no cap and no TTL: its depth is how an operator sees it grow."""
    assert value(gauges(collector), "startproc_results_queue_depth", queue="startproc.results") == 0
    redis_client.lpush("startproc.results", "a", "b")
    redis_client.lpush("startproc.results\x06\x166", "c")  # kombu's list for priority 6
    full = gauges(collector)
    assert value(full, "startproc_results_queue_depth", queue="startproc.results") == 3
    assert value(full, "startproc_jobs_queue_depth", queue="startproc.jobs") == 0
