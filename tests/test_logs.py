"""worker.logs: structlog writes its own lines, in the format the stdlib's records get.

`configure` sets process-wide state once, so each case runs in a fresh interpreter
and reads what it wrote to stderr.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

PRELUDE = """
import logging, sys, structlog
from worker.logs import configure
configure(sys.argv[1], sys.argv[2])
log = structlog.get_logger("worker.service")
celery = logging.getLogger("celery.worker")
"""


def run(
    code: str, level: str = "INFO", fmt: str = "json", **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STARTPROC_"))}
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), level, fmt],
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in done.stderr.splitlines()]


def test_a_structlog_line_has_the_keys_and_format_of_a_stdlib_record() -> None:
    done = run(
        """
        structlog.contextvars.bind_contextvars(job_id="job-1", attempt=2)
        log.info("job.finished", target="orders", status="created", instance_id="42",
                 error_kind=None)
        celery.info("task %s received", "job-1")
        """
    )
    ours, theirs = lines(done)
    assert ours == {
        "event": "job.finished",
        "job_id": "job-1",
        "attempt": 2,
        "target": "orders",
        "status": "created",
        "instance_id": "42",
        "error_kind": None,
        "level": "info",
        "logger": "worker.service",
        "timestamp": ours["timestamp"],
    }
    assert theirs == {
        "event": "task job-1 received",
        "job_id": "job-1",
        "attempt": 2,
        "level": "info",
        "logger": "celery.worker",
        "timestamp": theirs["timestamp"],
    }
    for line in (ours, theirs):  # ISO 8601 in UTC, as TimeStamper(fmt="iso", utc=True) writes
        assert line["timestamp"].endswith("Z") and line["timestamp"][10] == "T"
    assert done.stderr.splitlines()[0].startswith('{"')  # JSONRenderer's own spacing
    assert ", " in done.stderr and ": " in done.stderr


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("WARNING", ["s.warning", "c.warning", "s.error"]),
        ("info", ["s.info", "c.info", "s.warning", "c.warning", "s.error"]),
        ("DEBUG", ["s.debug", "c.debug", "s.info", "c.info", "s.warning", "c.warning", "s.error"]),
    ],
)
def test_the_level_filters_structlog_and_the_stdlib_alike(level: str, expected: list[str]) -> None:
    done = run(
        """
        for name in ("debug", "info", "warning"):
            getattr(log, name)("s." + name)
            getattr(celery, name)("c." + name)
        log.bind(x=1).error("s.error")
        """,
        level=level,
    )
    assert [line["event"] for line in lines(done)] == expected


def test_an_exception_carries_its_traceback_like_a_stdlib_one() -> None:
    done = run(
        """
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("job.internal_error")
            celery.exception("celery failed")
        """
    )
    ours, theirs = lines(done)
    for line in (ours, theirs):
        assert line["level"] == "error" and "exc_info" not in line
        assert line["exception"].startswith("Traceback (most recent call last):")
        assert line["exception"].endswith("ZeroDivisionError: division by zero")
    assert ours.keys() == {"event", "level", "logger", "timestamp", "exception"}


def test_the_console_format_is_one_plain_line_for_both() -> None:
    done = run(
        """
        log.warning("job.retry_not_scheduled", job_id="j-1", note="é")
        celery.warning("broker lost")
        """,
        fmt="console",
    )
    ours, theirs = done.stderr.splitlines()
    assert "[warning  ] job.retry_not_scheduled" in ours and "[worker.service]" in ours
    assert "job_id=j-1" in ours and "note=é" in ours
    assert "[warning  ] broker lost" in theirs and "[celery.worker]" in theirs
    assert "\x1b[" not in done.stderr  # no colours


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["PYTHONUNBUFFERED", "buffered"])
def test_lines_from_many_threads_never_interleave(unbuffered: str) -> None:
    """Unbuffered (the image's default) each line is one write(2), and a pipe mixes
    concurrent writes over 4 KiB: lines up to 40 KB, ours and the stdlib's."""
    done = run(
        """
        import threading
        def work(n):
            for i in range(200):
                log.info("line", thread=n, i=i, pad="x" * (i * 977 % 40000))
                if i % 4 == 0:
                    celery.info("stdlib %d %d %s", n, i, "y" * (i * 311 % 20000))
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        """,
        PYTHONUNBUFFERED=unbuffered,
    )
    parsed = lines(done)  # every line whole JSON
    ours = [line for line in parsed if line["event"] == "line"]
    assert len(ours) == 8 * 200 and len(parsed) == 8 * 200 + 8 * 50
    for n in range(8):
        assert [line["i"] for line in ours if line["thread"] == n] == list(range(200))


def test_a_forked_child_can_log_though_a_parent_thread_held_the_write_lock() -> None:
    """A prefork pool forks while other threads log; logging re-creates its handler's
    lock in the child, and that lock is the one structlog's lines are written under."""
    done = run(
        """
        import os, threading, time
        lock = log.bind()._logger._lock
        assert lock is logging.getLogger().handlers[0].lock
        held, release = threading.Event(), threading.Event()
        def hold():
            with lock:
                held.set()
                release.wait()
        threading.Thread(target=hold, daemon=True).start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            log.info("from the child")
            celery.info("stdlib from the child")
            os._exit(0)
        release.set()
        for _ in range(200):
            if os.waitpid(pid, os.WNOHANG)[0]:
                print("child done")
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            print("child stuck")
        """
    )
    assert done.stdout == "child done\n"
    events = [json.loads(line)["event"] for line in done.stderr.splitlines() if line[:1] == "{"]
    assert events == ["from the child", "stdlib from the child"]


def test_a_stderr_that_cannot_be_written_loses_the_line_not_the_caller() -> None:
    """As with a stdlib handler: stderr closed or a broken pipe never fails a job."""
    done = run(
        """
        import os
        sys.stderr.flush()
        os.close(2)  # EBADF on every write from now on
        log.info("lost", job_id="j-1")
        log.error("lost too")
        print("still running")
        """
    )
    assert done.stdout == "still running\n"
    with subprocess.Popen(
        [sys.executable, "-c", PRELUDE + "sys.stdin.read()\nlog.info('lost')\nprint('alive')",
         "INFO", "json"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None and proc.stdin is not None
        proc.stderr.close()  # the reader is gone: EPIPE
        out, _ = proc.communicate("", timeout=60)
    assert proc.returncode == 0 and out == "alive\n"


def test_every_worker_logger_is_named() -> None:
    """A line's ``logger`` is the name given to ``structlog.get_logger``; none would be null."""
    unnamed = []
    for path in sorted((REPO / "worker").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) == "structlog.get_logger"
                and not (node.args and isinstance(node.args[0], ast.Constant))
            ):
                unnamed.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert unnamed == []
