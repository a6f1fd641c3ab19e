"""The worker-side exporter: its HTTP endpoint, and prefork's multiprocess counters."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.prometheus import scrape, value
from worker import exporter, metrics

REPO = Path(__file__).resolve().parents[1]


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
        server = exporter.start_exporter(0, addr="127.0.0.1")
        assert server is not None
        port = server.server_address[1]
        try:
            metrics.in_call_retry("exported")
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            assert value(text, "startproc_retries_total", target="exported") >= 1
            assert value(text, "startproc_redis_up") == 1
            # The same port again cannot be bound: logged, and the worker goes on.
            assert exporter.start_exporter(port, addr="127.0.0.1") is None
        finally:
            server.shutdown()
            server.server_close()
    finally:
        settings.cache_clear()


# ---------------------------------------------------------------- prefork: automatic multiprocess

FORKING = """
import os
import worker.exporter as e
import worker.metrics as m
made = e.enable_multiprocess()
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
    assert exporter.forks_children(pool) is forks


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_the_worker_init_hook_switches_only_a_prefork_worker(
    pool: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads: nothing changes. Prefork: the variable is set before the pool would fork."""
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    code = (
        "import os, types, worker.exporter as e, worker.metrics as m\n"
        f"e.on_worker_init(sender=types.SimpleNamespace(pool_cls={pool!r}))\n"
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
    assert exporter.remove_stale_multiproc_dirs(str(tmp_path)) == [str(orphan)]
    assert not orphan.exists() and live.exists() and unrelated.exists()


def test_the_private_dir_is_named_after_the_worker_that_made_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    made, _ = run_forking({})
    owner = Path(made).name.removeprefix(metrics.MULTIPROC_PREFIX).split("-", 1)[0]
    assert owner.isdigit() and int(owner) != os.getpid()  # the child python's pid
