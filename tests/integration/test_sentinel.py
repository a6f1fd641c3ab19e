"""Redis Sentinel for the broker and the ledger, and a failover in the middle of a run.

A real master, replica and sentinel (tests/support/sentinel.py), a real
``celery worker`` and beat on ``sentinel://`` URLs, the Camunda 8 sandbox
holding each start for a moment so that starts are in flight when the master
is SIGKILLed. The sentinel promotes the replica; every job must still start
exactly once (the sandbox's own instance store) and have exactly one result
(the results index and the results queue).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.sentinel import MASTER_NAME, SentinelSet
from tests.support.service import drain
from worker import producer
from worker.broker.connections import (
    broker_connection,
    redis_client,
    refuse_cluster,
    refuse_redis_cluster,
)
from worker.broker.sentinel import SentinelURL
from worker.config import Settings, environment, settings
from worker.errors import ConfigError
from worker.local import demo
from worker.local.embedded import EmbeddedRedis, _die_with_parent, free_port, redis_server_binary
from worker.local.sandbox import SandboxServer
from worker.local.stack import LocalStack
from worker.runtime import result_store

pytestmark = pytest.mark.integration

JOBS = 60


@pytest.fixture
def sentinels() -> Iterator[SentinelSet]:
    with SentinelSet() as running:
        yield running


def sentinel_env(url: str, workdir: Path, sandbox: SandboxServer) -> dict[str, str]:
    return {
        "STARTPROC_BROKER_URL": url,
        "STARTPROC_REDIS_URL": url,
        "STARTPROC_SENTINEL_MASTER": MASTER_NAME,
        "STARTPROC_TARGETS": str(demo.write_targets(sandbox, workdir / "targets.toml")),
        demo.SECRET_VAR: demo.DEMO_SECRET,
        "STARTPROC_HTTP_BACKOFF_INITIAL": "0.01",
        "STARTPROC_HTTP_BACKOFF_MAX": "0.2",
        "STARTPROC_TASK_RETRY_BACKOFF_MAX": "1",
        # what is lost with the master comes back soon: kombu restores unacknowledged
        # messages after the visibility timeout, the sweeper re-drives undecided jobs
        "STARTPROC_TASK_TIME_LIMIT": "20",
        "STARTPROC_VISIBILITY_TIMEOUT": "25",
        "STARTPROC_LEASE_SECONDS": "17",
        "STARTPROC_SWEEP_INTERVAL": "2",
        "STARTPROC_REDRIVE_AFTER": "30",
    }


def test_sentinel_urls_are_parsed_for_kombu_and_redis_py() -> None:
    parsed = SentinelURL.parse("sentinel://:p%40ss@h1:26379;sentinel://h2/3")
    assert parsed == SentinelURL((("h1", 26379), ("h2", 26379)), 3, None, "p@ss")
    assert parsed.kombu_url() == "sentinel://:p%40ss@h1:26379/3;sentinel://:p%40ss@h2:26379/3"
    with pytest.raises(ConfigError, match="several databases"):
        SentinelURL.parse("sentinel://h1/1;sentinel://h2/2")
    with pytest.raises(ConfigError, match="sentinel://host:port"):
        SentinelURL.parse("sentinel://h1;redis://:secret@h2")
    with (
        environment({"STARTPROC_BROKER_URL": "sentinel://:secret@h1:26379/0"}),
        pytest.raises(ConfigError, match="STARTPROC_SENTINEL_MASTER") as refused,
    ):
        settings()  # as a worker or a command reads them: the variable named, no password
    assert "secret" not in str(refused.value)
    assert Settings(broker_url="sentinel://h1", sentinel_master="m").effective_redis_url()


def test_the_ledger_and_the_broker_reach_the_master_through_the_sentinel(
    sentinels: SentinelSet, sandbox: SandboxServer, tmp_path: Path
) -> None:
    with environment(sentinel_env(sentinels.url, tmp_path, sandbox)):
        client = redis_client(sentinels.url)
        client.set("startproc:probe", "1")
        assert sentinels.client(sentinels.master_port).get("startproc:probe") == b"1"
        with broker_connection(sentinels.url) as conn:
            conn.SimpleQueue("probe-queue").put({"n": 1})
        assert sentinels.client(sentinels.master_port).llen("probe-queue") == 1


def test_a_failover_mid_run_loses_no_job_and_doubles_none(
    sentinels: SentinelSet, sandbox: SandboxServer, tmp_path: Path
) -> None:
    c8 = sandbox.app("camunda8")
    demo.configure_sandbox(sandbox)
    c8.faults.configure(latency_ms=150)  # 4 threads x 150 ms: the run lasts a few seconds
    env = sentinel_env(sentinels.url, tmp_path, sandbox)
    with environment(env):
        stack = LocalStack(broker_url=sentinels.url, env=env, log_dir=tmp_path / "logs")
        try:
            stack.start_worker(concurrency=4)
            stack.start_beat(tmp_path)
            jobs = [
                {"target": "orders", "process": "order-process", "business_key": f"S-{n}"}
                for n in range(JOBS)
            ]
            ids = producer.publish([producer.prepare(job) for job in jobs])
            assert sentinels.replicated() == 1  # every job is on the replica too
            assert c8.wait_for_instances(JOBS // 4, timeout=120), logs(tmp_path)

            killed = time.monotonic()
            sentinels.kill_master()
            sentinels.wait_until(
                lambda: sentinels.master_address() == sentinels.replica_port,
                60,
                "the sentinel to promote the replica",
            )
            switched = time.monotonic()
            store = result_store(settings())
            deadline = time.monotonic() + 240
            found = {j: store.wait(j, max(deadline - time.monotonic(), 0.1)) for j in ids}
            finished = time.monotonic()
            consumed = drain(sentinels.url, wait=0.5, connect=broker_connection)
            published = Counter(m["job_id"] for m in consumed)
        finally:
            stack.stop()
    lost = [j for j, r in found.items() if r is None]
    assert lost == [], f"{len(lost)} jobs without a result\n{logs(tmp_path)}"
    assert Counter(r.status for r in found.values() if r) == {"created": JOBS}
    instances = c8.instances
    assert len(instances) == JOBS  # the engine's own store: one instance per job, no more
    carried = {t for i in instances for t in i["tags"] if t.startswith("startproc:")}
    assert len(carried) == JOBS  # each carries another job's key
    started = [r.instance_id for r in found.values() if r]
    assert len(set(started)) == JOBS and set(started) == {i["id"] for i in instances}
    assert {j: published[j] for j in ids} == dict.fromkeys(ids, 1)  # one result each
    print(
        f"\nsentinel failover: promoted {switched - killed:.1f} s after the SIGKILL; "
        f"all {JOBS} results {finished - killed:.1f} s after it"
    )


def logs(workdir: Path) -> str:
    return "\n".join(p.read_text()[-3000:] for p in sorted((workdir / "logs").glob("*.log")))


def test_redis_cluster_is_refused_at_start(tmp_path: Path) -> None:
    """A real redis-server in cluster mode: the start-up check names what to use instead
    (a worker's start runs it through `refuse_redis_cluster`); a plain Redis passes."""
    port = cluster_node_port()
    node = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
         "--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while not _answers(client):
            assert time.monotonic() < deadline and node.poll() is None, "no cluster node"
            time.sleep(0.05)
        with pytest.raises(ConfigError, match=r"Redis Cluster is not supported.*Sentinel"):
            refuse_cluster(client, "STARTPROC_REDIS_URL")
        url = f"redis://127.0.0.1:{port}/0"
        with (
            environment({"STARTPROC_BROKER_URL": url, "STARTPROC_REDIS_URL": url}),
            pytest.raises(ConfigError, match=r"STARTPROC_REDIS_URL \(redis://127.0.0.1"),
        ):
            refuse_redis_cluster(settings())
    finally:
        node.terminate()
        node.wait(timeout=10)
    with EmbeddedRedis() as plain:
        refuse_cluster(redis.Redis.from_url(plain.url), "STARTPROC_REDIS_URL")  # no error


CLUSTER_BUS_OFFSET = 10_000
"""A cluster node also listens on its port + 10000 (the cluster bus; Redis 6 has no
``cluster-port``), so its port must be at most 55535 and that one free too."""


def cluster_node_port() -> int:
    """A free port for a cluster node whose bus port is free as well.

    The kernel's free ports run up to 60999: about one in five is too high for
    a node, which then exits at start ("Redis port number too high").
    """
    for _ in range(200):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
