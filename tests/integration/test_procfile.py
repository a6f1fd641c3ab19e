"""The Procfile runs as written under honcho: worker and beat start, a job is created, all stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from kombu import Connection

from worker import producer
from worker.broker.connections import redis_client
from worker.delivery.results import KombuPublisher, ResultStore
from worker.local import demo
from worker.local.embedded import EmbeddedRedis
from worker.local.sandbox import SandboxServer

REPO = Path(__file__).resolve().parents[2]


def test_honcho_runs_worker_and_beat_from_the_procfile(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    demo.configure_sandbox(sandbox)
    targets = demo.write_targets(sandbox, tmp_path / "targets.toml")
    with EmbeddedRedis() as own_redis:  # only the Procfile's worker listens here
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("STARTPROC_")},
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "STARTPROC_BROKER_URL": own_redis.url,
            "STARTPROC_TARGETS": str(targets),
            demo.SECRET_VAR: demo.DEMO_SECRET,
        }
        honcho = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "honcho",
                "-f",
                str(REPO / "Procfile"),
                "-d",
                str(tmp_path),
                "start",
                "worker",
                "beat",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            job = producer.prepare({"target": "orders", "process": "order-process"})
            producer.publish([job], broker_url=own_redis.url)
            store = ResultStore(
                redis_client(own_redis.url),
                KombuPublisher(Connection(own_redis.url), "startproc.results"),
                retention_days=1,
            )
            result = store.wait(job["job_id"], timeout=60)
        finally:
            os.killpg(honcho.pid, signal.SIGTERM)
            output = honcho.communicate(timeout=60)[0].decode(errors="replace")
        assert result is not None and result.status == "created", output[-3000:]
        assert sandbox.app("camunda8").count() == 1
        assert "worker.1" in output and "beat.1" in output, output[-3000:]
        leftovers = subprocess.run(
            ["pgrep", "-s", str(honcho.pid)], capture_output=True, text=True
        ).stdout.split()
        assert leftovers == [], output[-3000:]
