"""Failpoints: named places where a fault test can make a worker die on purpose.

Like FoundationDB's and TiKV's failpoints: production code calls
``failpoint("before_send", job)`` at the moments that matter for delivery
guarantees, and nothing happens unless ``STARTPROC_FAILPOINTS`` is set.
Fault tests set it to SIGKILL a real worker process at an exact point
instead of racing it with timers::

    STARTPROC_FAILPOINTS="before_send=once;after_result@poison-process=always"
    STARTPROC_FAILPOINT_DIR=/tmp/markers      # where "once" remembers it fired

``once`` fires one time per (failpoint, job) across process restarts (a
marker file is created atomically); ``always`` fires every time, for poison
messages. ``@process`` limits a failpoint to jobs of that process id.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

POINTS = ("before_send", "after_response", "while_reconciling", "after_result")


@dataclass(frozen=True)
class _Rule:
    point: str
    process: str | None
    always: bool


@lru_cache(maxsize=1)
def _rules() -> tuple[_Rule, ...]:
    spec = os.environ.get("STARTPROC_FAILPOINTS", "")
    rules = []
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        name, _, mode = item.partition("=")
        point, _, process = name.partition("@")
        if point not in POINTS or mode not in ("once", "always"):
            raise ValueError(f"STARTPROC_FAILPOINTS: bad entry {item!r}")
        rules.append(_Rule(point, process or None, mode == "always"))
    return tuple(rules)


def failpoint(point: str, job_id: str, process: str | None = None) -> None:
    """Kill this process here if a fault test asked for it; otherwise do nothing."""
    for rule in _rules():
        if rule.point != point or (rule.process and rule.process != process):
            continue
        if not rule.always and not _first_time(point, job_id):
            continue
        os.kill(os.getpid(), signal.SIGKILL)


def _first_time(point: str, job_id: str) -> bool:
    directory = Path(os.environ.get("STARTPROC_FAILPOINT_DIR", "/tmp"))
    try:
        fd = os.open(directory / f"failpoint-{point}-{job_id}", os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True
