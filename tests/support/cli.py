"""Running ``startproc`` as a person does: a real process, its exit code, its two streams."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

STARTPROC = [sys.executable, "-m", "worker.cli"]


@dataclass
class Run:
    """A finished ``startproc`` process and how long it took (seconds, wall clock)."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def error_line(self) -> str:
        """The one line on stderr, which must be ``error: …`` (no traceback, nothing else)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert "Traceback" not in self.stderr, self.stderr
        assert len(lines) == 1, f"expected one line on stderr, got:\n{self.stderr}"
        assert lines[0].startswith("error: "), lines[0]
        return lines[0]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``STARTPROC_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARTPROC_")}
    env.update(extra)
    return env


def startproc(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
    stdin: str | None = None,
) -> Run:
    """``startproc ARGS`` with ``env`` added to this process's environment (or replacing it
    when it came from `clean_env`)."""
    full_env = env if env is not None and "PATH" in env else {**os.environ, **(env or {})}
    started = time.monotonic()
    done = subprocess.run(
        [*STARTPROC, *args],
        env=full_env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(args, done.returncode, done.stdout, done.stderr, time.monotonic() - started)
