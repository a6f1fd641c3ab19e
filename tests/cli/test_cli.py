"""The `startproc` command line as a user runs it: a real process, real exit codes."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.conftest import Pipeline
from tests.support.cli import STARTPROC, clean_env, startproc
from worker.local.embedded import free_port


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


def test_enqueue_without_wait_prints_the_job_id_and_status_reports_it(live: Pipeline) -> None:
    done = startproc("enqueue", "-t", "cases", "-p", "27", "-v", "amount=5", "--json", env=live.env)
    job_id = json.loads(done.stdout)["job_id"]
    live.wait(job_id)
    assert startproc("status", job_id, env=live.env).returncode == 0


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
    statuses = {r["target"]: r["status"] for r in json.loads(checked.stdout)}
    # Blueworks and TAS document no harmless read: valid, but their engine was not called.
    assert statuses == {
        "orders": "ok",
        "invoices": "ok",
        "onboarding": "ok",
        "approvals": "not contacted",
        "cases": "not contacted",
    }
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
        cwd=tmp_path,
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
    found = _celery_workers(children)
    events = [b"-E" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in found]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert len(children) >= 1 + workers  # redis-server and the celery workers
    assert len(found) == workers
    assert all(events), "task events on (-E), so Flower shows the jobs"
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


# ---------------------------------------------------------------- as a person meets it (issue 17)

TAS_A = '[targets.a]\nengine = "tas"\nbase_url = "http://127.0.0.1:9"\n'
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _targets(tmp_path: Path, text: str = TAS_A) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _dead_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


OPERATIONS = [
    ("enqueue", "-t", "a", "-p", "p"),
    ("status", "abc"),
    ("results",),
    ("dlq", "list"),
    ("batch", "status", "b"),
]


@pytest.mark.parametrize("args", OPERATIONS, ids=" ".join)
def test_without_a_broker_each_command_says_so_in_one_line(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    env = clean_env(STARTPROC_TARGETS=str(_targets(tmp_path)))
    run = startproc(*args, env=env, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    line = run.error_line()
    assert line.startswith("error: STARTPROC_BROKER_URL is not set"), line
    assert "startproc up" in line and "is not Redis" not in line


@pytest.mark.parametrize("args", OPERATIONS, ids=" ".join)
def test_an_unreachable_redis_fails_fast_in_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    url = _dead_redis_url()
    env = clean_env(STARTPROC_BROKER_URL=url, STARTPROC_TARGETS=str(_targets(tmp_path)))
    run = startproc(*args, env=env, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    line = run.error_line()
    assert line.startswith(f"error: Redis at {url} is unreachable ("), line
    assert "`startproc up` prints the URL to export" in line
    # The interpreter's start included; Redis' own client retries for 5.5 s.
    assert run.seconds < 3.5, run.seconds


def test_an_unreachable_rabbitmq_fails_fast_without_its_password(
    tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    env = clean_env(
        STARTPROC_BROKER_URL=f"amqp://guest:pw-hunter2@127.0.0.1:{port}//",
        STARTPROC_REDIS_URL=redis_url,
        STARTPROC_TARGETS=str(_targets(tmp_path)),
    )
    run = startproc("enqueue", "-t", "a", "-p", "p", env=env, cwd=tmp_path)
    assert run.returncode == 1
    line = run.error_line()
    assert line.startswith(
        f"error: the broker at amqp://guest:***@127.0.0.1:{port}// is unreachable"
    )
    assert "hunter2" not in run.stderr + run.stdout
    assert run.seconds < 3.5, run.seconds


def test_a_broker_url_of_another_kind_is_refused_before_redis_is_touched(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    env = clean_env(
        STARTPROC_BROKER_URL="http://user:pw-hunter2@x",
        STARTPROC_REDIS_URL=redis_url,
        STARTPROC_TARGETS=str(_targets(tmp_path)),
    )
    run = startproc("enqueue", "-t", "a", "-p", "p", env=env, cwd=tmp_path)
    assert run.returncode == 2
    assert run.error_line().startswith(
        "error: STARTPROC_BROKER_URL: 'http://user:***@x' is not a broker URL: http scheme, "
        "expected redis, rediss, amqp, amqps, pyamqp, sentinel"
    )
    assert "hunter2" not in run.stderr
    assert redis_client.hlen("startproc:inflight") == 0, "the job was noted in Redis first"


def test_text_in_brackets_reaches_the_screen_whole(tmp_path: Path) -> None:
    bad = _targets(tmp_path, '[targets.A]\nengine = "tas"\nbase_url = "http://x"\n')
    listed = startproc("targets", "list", env=clean_env(STARTPROC_TARGETS=str(bad)), cwd=tmp_path)
    assert listed.returncode == 2
    assert listed.error_line() == (
        f"error: {bad}: targets.A: target names match ^[a-z0-9][a-z0-9_-]{{0,63}}$"
    )

    good = _targets(tmp_path)
    rows = tmp_path / "rows.csv"
    rows.write_text("id,amount\nA-1,[bold]12\nA-2,[red]x[/]\n", encoding="utf-8")
    args = ["batch", str(rows), "-t", "a", "-p", "7", "--business-key", "id"]
    run = startproc(
        *args,
        "--map",
        "amount:float",
        "--dry-run",
        env=clean_env(STARTPROC_TARGETS=str(good), COLUMNS="200"),
        cwd=tmp_path,
    )
    assert run.returncode == 2, run.stderr
    assert "'[bold]12' is not a number" in run.stderr
    assert "'[red]x[/]' is not a number" in run.stderr


def test_result_tables_keep_brackets_and_show_ids_status_takes(live: Pipeline) -> None:
    env = {**live.env, "COLUMNS": "200"}
    sent = startproc("enqueue", "-t", "orders", "-p", "[b]no-such[/b]", "--json", env=env)
    job_id = json.loads(sent.stdout)["job_id"]
    assert live.wait(job_id).status == "failed"
    shown = startproc("status", job_id, env=env)
    assert shown.returncode == 1
    assert job_id in shown.stdout, "the whole id, as `status` takes it"
    assert "[b]no-such[/b]" in shown.stdout
    listed = startproc("results", env=env)
    assert job_id in listed.stdout and "[b]no-such[/b]" in listed.stdout

    by_prefix = startproc("status", job_id[:8], "--json", env=env)
    assert by_prefix.returncode == 1, by_prefix.stderr
    assert json.loads(by_prefix.stdout)["job_id"] == job_id


def test_a_prefix_of_several_job_ids_is_refused_naming_them(live: Pipeline) -> None:
    from worker import producer

    for job_id in ("twin-1", "twin-2"):
        producer.enqueue({"target": "orders", "process": "order-process", "job_id": job_id})
        live.wait(job_id)
    run = startproc("status", "twin-", env=live.env)
    assert run.returncode == 2
    assert run.error_line() == (
        "error: job id 'twin-' is the start of several job ids (twin-1, twin-2): give more of it"
    )


def test_status_tells_an_unknown_job_id_from_a_pending_one(live: Pipeline) -> None:
    unknown = startproc("status", "never-enqueued-1", env=live.env)
    assert unknown.returncode == 4
    assert unknown.error_line().startswith(
        "error: unknown job id 'never-enqueued-1': never enqueued through startproc"
    )
    as_json = startproc("status", "never-enqueued-1", "--json", env=live.env)
    assert as_json.returncode == 4
    assert json.loads(as_json.stdout) == {"job_id": "never-enqueued-1", "status": "unknown"}

    # Jobs on a queue no worker reads stay pending, with or without the sweeper's re-drive.
    for redrive in ("3600", "0"):
        env = {
            **live.env,
            "STARTPROC_JOBS_QUEUE": "nobody-reads-this",
            "STARTPROC_REDRIVE_AFTER": redrive,
        }
        sent = startproc("enqueue", "-t", "orders", "-p", "order-process", "--json", env=env)
        assert sent.returncode == 0, sent.stderr
        job_id = json.loads(sent.stdout)["job_id"]
        pending = startproc("status", job_id, "--json", env=live.env)
        assert pending.returncode == 3, pending.stderr
        assert json.loads(pending.stdout) == {"job_id": job_id, "status": "pending"}


def test_enqueue_refuses_an_unknown_target_and_a_bad_targets_file(
    live: Pipeline, tmp_path: Path
) -> None:
    unknown = startproc("enqueue", "-t", "ordres", "-p", "order-process", env=live.env)
    assert unknown.returncode == 2
    assert unknown.error_line().startswith(
        "error: --target: unknown target 'ordres' (did you mean 'orders'?); the targets in "
    )
    assert unknown.stdout == "", "no job id: nothing was enqueued"

    bad = _targets(tmp_path, '[targets.orders]\nengine = "camunda9"\nbase_url = "http://x"\n')
    run = startproc(
        "enqueue", "-t", "orders", "-p", "p", env={**live.env, "STARTPROC_TARGETS": str(bad)}
    )
    assert run.returncode == 2
    assert run.error_line() == (
        f"error: {bad}: targets.orders.engine: unknown engine 'camunda9' (did you mean "
        "'camunda8'?); one of camunda8, camunda7, processmaker4, blueworks, tas"
    )
    assert run.stdout == ""


def test_batch_resolves_only_the_secrets_of_its_own_target(tmp_path: Path) -> None:
    targets = _targets(
        tmp_path,
        TAS_A + '[targets.b]\nengine = "tas"\nbase_url = "http://127.0.0.1:9"\n'
        '[targets.b.auth]\ntype = "bearer"\ntoken = "${B_TOKEN}"\n',
    )
    rows = tmp_path / "rows.csv"
    rows.write_text("id\nA-1\n", encoding="utf-8")
    env = clean_env(STARTPROC_TARGETS=str(targets))
    args = [str(rows), "-p", "7", "--business-key", "id", "--dry-run"]
    fine = startproc("batch", *args, "-t", "a", env=env, cwd=tmp_path)
    assert fine.returncode == 0, fine.stderr
    needs = startproc("batch", *args, "-t", "b", env=env, cwd=tmp_path)
    assert needs.returncode == 2
    assert needs.error_line() == (
        f"error: {targets}: targets.b.auth.token: environment variable B_TOKEN is not set"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            TAS_A + '[targets.a.auth]\ntype = "oauth"\n',
            [
                "targets.a.auth.type: unknown type 'oauth' (did you mean 'oauth2'?); "
                "one of none, basic, bearer, oauth2"
            ],
        ),
        (
            TAS_A + '[targets.a.auth]\ntype = "oauth2"\ntoken_url = "http://x/t"\n'
            'client_id = "c"\ngrant = "password"\n',
            ["targets.a.auth: grant 'password' needs username and password"],
        ),
        (
            '[targets.a]\nbase_url = "http://x"\ntimout = 3\n',
            [
                "targets.a.engine: missing; one of camunda8, camunda7, processmaker4, "
                "blueworks, tas",
                "targets.a.timout: unknown field (did you mean 'timeout'?)",
            ],
        ),
        (
            TAS_A.replace("http://127.0.0.1:9", "ftp://x") + 'rate_limit = "50/sec"\n',
            [
                "targets.a.base_url: not an http(s) URL: 'ftp://x'",
                "targets.a.rate_limit: expected a rate like '50/s', '10/m' or '100/h', "
                "not '50/sec'",
            ],
        ),
    ],
)
def test_targets_file_problems_are_our_own_sentences(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = _targets(tmp_path, text)
    run = startproc("targets", "check", env=clean_env(STARTPROC_TARGETS=str(path)), cwd=tmp_path)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert lines == [f"error: {path}: {expected[0]}", *(f"{path}: {e}" for e in expected[1:])]


def test_targets_list_and_check_name_an_unset_variable_without_failing_the_others(
    tmp_path: Path,
) -> None:
    path = _targets(
        tmp_path,
        TAS_A + '[targets.b]\nengine = "tas"\nbase_url = "http://127.0.0.1:9"\n'
        '[targets.b.auth]\ntype = "bearer"\ntoken = "${B_TOKEN}"\n',
    )
    env = clean_env(STARTPROC_TARGETS=str(path))
    listed = startproc("targets", "list", "--json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["a"]["unresolved"] == []
    assert rows["b"]["auth"] == "bearer"
    assert rows["b"]["unresolved"] == ["environment variable B_TOKEN is not set"]
    checked = startproc("targets", "check", "--json", env=env, cwd=tmp_path)
    assert checked.returncode == 1
    assert {r["target"]: r["status"] for r in json.loads(checked.stdout)} == {
        "a": "not contacted",
        "b": "fail",
    }


def test_up_checks_the_configuration_before_starting_anything(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    run = startproc("up", env=clean_env(STARTPROC_TARGETS=str(missing)), cwd=tmp_path)
    assert run.returncode == 2
    assert run.error_line() == (
        f"error: {missing}: targets file not found (set STARTPROC_TARGETS; "
        "config/targets.example.toml shows every engine)"
    )
    assert not (tmp_path / ".startproc").exists(), "no Redis was started"


def _role(pid: int) -> str | None:
    """``worker`` or ``beat`` for a ``celery -A worker …`` process, else None."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return None
    if b"celery" not in args or b"-A" not in args:
        return None
    at = args.index(b"-A") + 2
    return args[at].decode() if at < len(args) else None


def test_up_exits_naming_a_worker_that_keeps_dying(tmp_path: Path) -> None:
    env = clean_env(STARTPROC_TARGETS=str(_targets(tmp_path)))
    proc = subprocess.Popen(
        [*STARTPROC, "up", "--concurrency", "2"],  # with beat, which alone would run on
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed: set[int] = set()
    children: set[int] = set()
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            for pid in _descendants(proc.pid):
                children.add(pid)
                if pid not in killed and _role(pid) == "worker":
                    os.kill(pid, signal.SIGKILL)  # a worker that dies at start, every time
                    killed.add(pid)
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err[-3000:]
    assert len(killed) == 3
    assert (
        "error: worker exited 3 times within 5 s of starting (last exit status -9); "
        "its messages are above. Stopping."
    ) in err.splitlines()
    wait_gone = time.monotonic() + 15
    while any(_alive(pid) for pid in children) and time.monotonic() < wait_gone:
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)], "beat and Redis were stopped too"


def _up_once(tmp_path: Path, env: dict[str, str], action: Callable[[str], None]) -> list[str]:
    proc = subprocess.Popen(
        [*STARTPROC, "up", "--no-beat", "--concurrency", "1"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    try:
        match = re.search(r"redis://127\.0\.0\.1:\d+/0", lines[0])
        assert match, lines
        action(match.group())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0
    return lines


def test_up_keeps_its_redis_port_and_data_between_runs(tmp_path: Path) -> None:
    env = clean_env(STARTPROC_TARGETS=str(_targets(tmp_path)))
    urls: list[str] = []

    def write(url: str) -> None:
        urls.append(url)
        client = redis.Redis.from_url(url)
        client.set("kept", "across runs")
        client.close()

    def read(url: str) -> None:
        urls.append(url)
        client = redis.Redis.from_url(url)
        assert client.get("kept") == b"across runs"
        client.close()

    first = _up_once(tmp_path, env, write)
    second = _up_once(tmp_path, env, read)
    assert urls[0] == urls[1]
    assert first[1] == second[1] == f"in another shell: export STARTPROC_BROKER_URL={urls[0]}\n"
    port = urls[0].split(":")[2].split("/")[0]
    assert (tmp_path / ".startproc" / "redis.port").read_text().strip() == port


def test_version_and_typed_variables_in_help() -> None:
    from worker import __version__

    version = startproc("--version")
    assert version.returncode == 0 and version.stdout == f"startproc {__version__}\n"
    helped = startproc("enqueue", "--help", env={"COLUMNS": "200"})
    assert helped.returncode == 0
    text = " ".join(helped.stdout.split())
    assert "n=3 is the number 3" in text and "id=00123" in text and "are strings" in text
    assert "<bool>" not in helped.stdout


def _command_paths() -> list[tuple[str, ...]]:
    from typer.main import get_command

    from worker.cli.app import app

    paths: list[tuple[str, ...]] = [()]
    todo: list[tuple[tuple[str, ...], Any]] = [((), get_command(app))]
    while todo:
        path, command = todo.pop()
        for name, sub in getattr(command, "commands", {}).items():
            paths.append((*path, name))
            todo.append(((*path, name), sub))
    return sorted(paths)


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "startproc")
def test_every_help_has_a_text_for_each_option_and_no_type_placeholders(
    path: tuple[str, ...],
) -> None:
    from typer.main import get_command
    from typer.testing import CliRunner

    from worker.cli.app import app

    out = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "<bool>" not in out.output
    options = out.output.split("Options:", 1)[-1]
    assert not re.search(r"<[a-z][^>]*>", options), out.output  # <str>, <int range>, …
    command: Any = get_command(app)
    for name in path:
        command = command.commands[name]
    for param in command.params:
        if param.param_type_name == "option":
            assert param.help, f"{' '.join(path)} {param.opts}: no help text"


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import json, sys\n"
        "sys.argv = ['startproc', '--help']\n"
        "from worker.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = {'pydantic', 'pydantic_settings', 'redis', 'kombu', 'celery', 'structlog',"
        " 'fastapi', 'uvicorn', 'worker.config', 'worker.models'}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m in heavy"
        " or m.split('.')[0] in heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    # What makes --help slow is what it imports (0.09 s without these, 0.4 s with them);
    # checked by what is loaded, not by a stopwatch, so a busy machine cannot fail it.
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_dlq_show_prints_iso_timestamps(live: Pipeline) -> None:
    live.sandbox.app("tas").faults.script([{"drop": "after_commit"}])
    sent = startproc("enqueue", "-t", "cases", "-p", "27", "--json", env=live.env)
    job_id = json.loads(sent.stdout)["job_id"]
    assert live.wait(job_id).status == "failed"
    shown = json.loads(startproc("dlq", "show", job_id, "--json", env=live.env).stdout)
    assert ISO_UTC.match(shown["at"]), shown["at"]
    [listed] = json.loads(startproc("dlq", "list", "--json", env=live.env).stdout)
    assert ISO_UTC.match(listed["at"])
    text = startproc("dlq", "show", job_id, env=live.env).stdout
    assert f'"at": "{shown["at"]}"' in text


def test_batch_status_of_an_unknown_batch_is_one_clean_error(live: Pipeline) -> None:
    run = startproc("batch", "status", "never:seen:batch", env=live.env)
    assert run.returncode == 4
    assert run.error_line().startswith("error: unknown batch 'never:seen:batch': ")
    assert run.stdout == ""
    as_json = startproc("batch", "status", "never:seen:batch", "--json", env=live.env)
    assert as_json.returncode == 4
    assert json.loads(as_json.stdout) == {"batch_id": "never:seen:batch", "status": "unknown"}


def _readme_example(prefix: str) -> list[str]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    line = next(line for line in readme.splitlines() if line.startswith(prefix))
    return shlex.split(line.split("#")[0])


def test_the_readme_enqueue_example_runs_and_a_bare_wait_waits(live: Pipeline) -> None:
    argv = _readme_example("startproc enqueue ")
    assert argv[:2] == ["startproc", "enqueue"] and "--wait" in argv
    run = startproc(*argv[1:], env={**live.env, "COLUMNS": "200"})
    assert run.returncode == 0, run.stderr
    assert "created" in run.stdout
    # docker-compose.yml's example: `--wait` alone waits for the result, however long
    bare = startproc(
        "enqueue",
        "--target",
        "orders",
        "--process",
        "order-process",
        "--wait",
        "--json",
        env=live.env,
    )
    assert bare.returncode == 0, bare.stderr
    assert json.loads(bare.stdout)["status"] == "created"


def test_health_beat_reads_the_heartbeat_of_a_real_beat(tmp_path: Path, redis_url: str) -> None:
    from worker.local.stack import LocalStack

    schedule = tmp_path / "celerybeat-schedule"
    heartbeat = tmp_path / "celerybeat-schedule.heartbeat"
    env = clean_env(STARTPROC_BROKER_URL=redis_url)
    missing = startproc("health", "beat", "-s", str(schedule), env=env, cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.error_line().startswith(f"error: {heartbeat}: no heartbeat")

    stack = LocalStack(broker_url=redis_url, env=env, log_dir=tmp_path / "logs")
    try:
        stack.start_beat(state_dir=tmp_path)
        deadline = time.monotonic() + 60
        while not heartbeat.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        healthy = startproc("health", "beat", "-s", str(schedule), "--json", env=env)
        assert healthy.returncode == 0, healthy.stderr
        assert json.loads(healthy.stdout)["healthy"] is True
    finally:
        stack.stop()
    stale = time.time() - 600
    os.utime(heartbeat, (stale, stale))
    old = startproc("health", "beat", "-s", str(schedule), "--max-age", "60", env=env)
    assert old.returncode == 1
    assert re.match(r"error: beat last ticked 60\d s ago \(limit 60 s; ", old.error_line())
