"""The `startproc` command line as a user runs it: a real process, real exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Pipeline

STARTPROC = [sys.executable, "-m", "worker.cli.__main__"]


def startproc(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STARTPROC, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_enqueue_wait_json_created_exits_0(live: Pipeline) -> None:
    done = startproc(
        "enqueue",
        "--target",
        "orders",
        "--process",
        "order-process",
        "--var",
        "orderId=C-1",
        "--var",
        "amount=3.5",
        "--business-key",
        "C-1",
        "--wait",
        "30",
        "--json",
        env=live.env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "created" and result["instance_id"]
    instance = live.sandbox.app("camunda8").instances[0]
    assert instance["variables"] == {"orderId": "C-1", "amount": 3.5}

    status = startproc("status", result["job_id"], "--json", env=live.env)
    assert (
        status.returncode == 0 and json.loads(status.stdout)["instance_id"] == result["instance_id"]
    )
    by_key = startproc("status", "--key", "orders:order-process:C-1", "--json", env=live.env)
    assert json.loads(by_key.stdout)["job_id"] == result["job_id"]


def test_failed_job_exits_1_and_usage_errors_exit_2(live: Pipeline) -> None:
    failed = startproc(
        "enqueue", "-t", "orders", "-p", "no-such-process", "--wait", "30", "--json", env=live.env
    )
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["error"]["kind"] == "permanent"
    usage = startproc("enqueue", "--target", "orders", env=live.env)
    assert usage.returncode == 2
    invalid = startproc("enqueue", "-t", "Bad Name", "-p", "p", env=live.env)
    assert invalid.returncode == 2 and "target" in invalid.stderr
    assert "Traceback" not in invalid.stderr


def test_enqueue_without_wait_prints_the_job_id_and_status_reports_pending(live: Pipeline) -> None:
    done = startproc("enqueue", "-t", "cases", "-p", "27", "-v", "amount=5", "--json", env=live.env)
    job_id = json.loads(done.stdout)["job_id"]
    live.wait(job_id)
    assert startproc("status", job_id, env=live.env).returncode == 0
    pending = startproc("status", "no-such-job", "--json", env=live.env)
    assert pending.returncode == 3 and json.loads(pending.stdout)["status"] == "pending"


def test_results_lists_recent_results(live: Pipeline) -> None:
    job_id = json.loads(
        startproc("enqueue", "-t", "orders", "-p", "order-process", "--json", env=live.env).stdout
    )["job_id"]
    live.wait(job_id)
    listed = startproc("results", "--json", env=live.env)
    assert job_id in [json.loads(line)["job_id"] for line in listed.stdout.splitlines()]


def test_targets_list_and_check_never_print_secrets(live: Pipeline) -> None:
    listed = startproc("targets", "list", "--json", env=live.env)
    names = {row["name"] for row in json.loads(listed.stdout)}
    assert names == {"orders", "invoices", "onboarding", "approvals", "cases"}
    checked = startproc("targets", "check", "--json", env=live.env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert {r["status"] for r in json.loads(checked.stdout)} == {"ok"}
    secret = live.env["STARTPROC_DEMO_SECRET"]
    assert secret not in listed.stdout + checked.stdout + checked.stderr
    reasons = {r["target"]: r["reason"] for r in json.loads(checked.stdout)}
    assert "GET /v2/topology answered" in reasons["orders"]
    assert "token obtained" in reasons["orders"]
    assert "GET /version answered" in reasons["invoices"]


def test_targets_check_fails_on_rejected_credentials(live: Pipeline) -> None:
    live.sandbox.app("camunda7").auth.configure(type="basic", username="demo", password="other")
    checked = startproc("targets", "check", "invoices", "--json", env=live.env)
    assert checked.returncode == 1
    [row] = json.loads(checked.stdout)
    assert row["status"] == "fail" and "401" in row["reason"]


def test_bad_targets_file_stops_the_worker_at_start(live: Pipeline, tmp_path: Path) -> None:
    bad = tmp_path / "targets.toml"
    bad.write_text('[targets.orders]\nengine = "camunda9"\nbase_url = "http://x"\n')
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "solo"],
        env={**os.environ, **live.env, "STARTPROC_TARGETS": str(bad)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert str(bad) in done.stderr and "did you mean 'camunda8'" in done.stderr


def test_dlq_list_show_purge(live: Pipeline) -> None:
    live.sandbox.app("tas").faults.script([{"drop": "after_commit"}])
    job_id = json.loads(
        startproc(
            "enqueue", "-t", "cases", "-p", "27", "-v", "amount=1", "--json", env=live.env
        ).stdout
    )["job_id"]
    result = live.wait(job_id)
    assert result.status == "failed" and result.error and result.error.kind == "ambiguous"
    listed = json.loads(startproc("dlq", "list", "--json", env=live.env).stdout)
    assert [e["job_id"] for e in listed] == [job_id]
    shown = json.loads(startproc("dlq", "show", job_id, "--json", env=live.env).stdout)
    assert shown["reason"] == "ambiguous"
    purged = json.loads(startproc("dlq", "purge", "--yes", "--json", env=live.env).stdout)
    assert purged == {"purged": 1}


@pytest.mark.parametrize("workers", [1, 2])
def test_up_runs_embedded_redis_and_stops_everything_on_ctrl_c(
    tmp_path: Path, workers: int
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARTPROC_")}
    env["STARTPROC_TARGETS"] = str(tmp_path / "targets.toml")
    (tmp_path / "targets.toml").write_text(
        '[targets.a]\nengine = "tas"\nbase_url = "http://127.0.0.1:9"\n'
    )
    proc = subprocess.Popen(
        [*STARTPROC, "up", "--no-beat", "--concurrency", "2", "--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"redis://127\.0\.0\.1:(\d+)", line)
    assert match, line
    children = _descendants(proc.pid)
    deadline = time.monotonic() + 30
    while len(_celery_workers(children)) < workers and time.monotonic() < deadline:
        time.sleep(0.1)
        children = _descendants(proc.pid)
    assert len(children) >= 1 + workers  # redis-server and the celery workers
    assert len(_celery_workers(children)) == workers
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)]


def _celery_workers(pids: list[int]) -> list[int]:
    """The ``celery ... worker`` processes among ``pids``."""
    found = []
    for pid in pids:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"celery" in args and b"worker" in args:
            found.append(pid)
    return found


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,ppid=", "-e"], capture_output=True, text=True).stdout
    parents: dict[int, list[int]] = {}
    for row in out.split("\n"):
        if row.strip():
            child, parent = map(int, row.split())
            parents.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
