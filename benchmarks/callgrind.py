"""Instructions counted by ``valgrind --tool=callgrind``: the steadiest figure on a noisy machine.

A benchmark runs a child twice under callgrind, once with N calls of what it
measures and once with none; the difference divided by N is one call, with
start-up and warm-up cancelled. ``--worker-from`` makes the child import
another checkout's ``worker`` package, for A/B counts in one run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT = 1800.0
_TOTAL = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


def total(module: str, child_args: list[str], workdir: Path) -> int:
    """Instructions ``python -m module child_args...`` executed in all (callgrind's summary)."""
    out = workdir / f"callgrind.{len(list(workdir.iterdir()))}.out"
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            "--dump-instr=no",
            "--compress-strings=no",
            sys.executable,
            "-m",
            module,
            *child_args,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # what the children log goes nowhere
        timeout=CHILD_TIMEOUT,
    )
    match = _TOTAL.search(out.read_bytes())
    if match is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(match.group(1))


def per_call(calls: int, child_args: Callable[[int], list[str]], module: str) -> float:
    """(instructions with ``calls`` calls - without) / ``calls``; ``child_args(n)`` builds
    the child's arguments for n calls."""
    workdir = Path(tempfile.mkdtemp(prefix="startproc-callgrind-"))
    try:
        empty = total(module, child_args(0), workdir)
        full = total(module, child_args(calls), workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return (full - empty) / calls


def use_worker_from(checkout: Path) -> None:
    """Make ``import worker`` load ``checkout``'s package (ours may be imported already)."""
    for name in [m for m in sys.modules if m == "worker" or m.startswith("worker.")]:
        del sys.modules[name]
    sys.path.insert(0, str(checkout))


def check_worker_from(checkout: Path) -> None:
    """Refuse a count of the wrong code (an editable install may shadow ``checkout``)."""
    import worker

    if Path(worker.__file__).resolve().parents[1] != checkout.resolve():
        raise SystemExit(f"measured {worker.__file__}, not the code in {checkout}")
