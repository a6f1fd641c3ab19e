"""The overview: per target starts and errors, the backlog, dead letters by kind, live workers.

Every number is read from Redis when the page is drawn, each in O(1) or one
bounded pipeline: outcomes from the per-minute counters (`worker.delivery.outcomes`),
the backlog with LLEN plus one LINDEX for its oldest job (Redis broker only),
dead letters with one bounded HSCAN, workers from their liveness beacons
(`worker.delivery.beacons`).
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from worker import keys
from worker.console.context import Console, SignedIn, console_of
from worker.console.render import page
from worker.delivery.beacons import LiveWorker, live_workers
from worker.delivery.outcomes import Counts, read_windows

router = APIRouter()

DLQ_SCAN_LIMIT = 5000
_PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport: one list per priority step
_PRIORITY_STEPS = (3, 6, 9)


@dataclass
class TargetRow:
    name: str
    engine: str
    rate_limit: str | None
    short: Counts
    long: Counts


@dataclass
class Backlog:
    depth: int | None = None
    oldest_age: float | None = None
    note: str = ""


@dataclass
class Overview:
    targets: list[TargetRow] = field(default_factory=list)
    backlog: Backlog = field(default_factory=Backlog)
    dead_letters: dict[str, int] = field(default_factory=dict)
    dead_letters_total: int = 0
    dead_letters_counted: int = 0
    workers: list[LiveWorker] = field(default_factory=list)
    health: dict[str, dict[str, Any]] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


def _target_rows(console: Console, client: redis.Redis) -> list[TargetRow]:
    targets = console.intake.targets()
    windows = read_windows(client)
    names = list(targets.names())
    names += [n for n in windows.targets() if n not in names]  # (unknown), removed targets
    rows = []
    for name in names:
        engine, rate = "", None
        if name in targets:
            target = targets[name]
            engine, rate = str(getattr(target, "engine", "")), target.rate_limit
        rows.append(
            TargetRow(
                name,
                engine,
                rate,
                windows.short.get(name, Counts()),
                windows.long.get(name, Counts()),
            )
        )
    return rows


def _enqueued_at(envelope: str) -> float | None:
    """The ``enqueued_at`` of the job in a kombu Redis message (Celery protocol 2), if any."""
    try:
        message = json.loads(envelope)
        body = json.loads(base64.b64decode(message["body"]))
        job = body[1]["job"]
        stamp = job.get("enqueued_at") if isinstance(job, dict) else None
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _backlog(console: Console) -> Backlog:
    broker = console.broker_redis
    if broker is None:
        return Backlog(note="the broker is not Redis: see its own console for the queue depth")
    name = console.settings.jobs_queue
    lists = [name, *(f"{name}{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS)]
    pipe = broker.pipeline(transaction=False)
    for each in lists:
        pipe.llen(each)
    pipe.lindex(name, -1)  # LPUSH in, BRPOP out: the oldest waits at the tail
    *depths, oldest = pipe.execute()
    backlog = Backlog(depth=sum(int(d) for d in depths))
    stamp = _enqueued_at(str(oldest)) if oldest else None
    if stamp is not None:
        backlog.oldest_age = max(time.time() - stamp, 0.0)
    elif oldest:
        backlog.note = "the oldest job carries no enqueued_at (sent by a foreign app)"
    return backlog


def _dead_letters(client: redis.Redis) -> tuple[dict[str, int], int, int]:
    """Counts by error kind (else the reason) over at most `DLQ_SCAN_LIMIT` entries."""
    kinds: Counter[str] = Counter()
    counted = 0
    for _job_id, raw in client.hscan_iter(keys.DLQ, count=500):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        error = entry.get("error") or {}
        kinds[str(error.get("kind") or entry.get("reason") or "unknown")] += 1
        counted += 1
        if counted >= DLQ_SCAN_LIMIT:
            break
    return dict(sorted(kinds.items())), int(client.hlen(keys.DLQ)), counted


def gather(console: Console) -> Overview:
    client = console.client()
    found = Overview(health=console.intake.health())
    found.targets = _target_rows(console, client)
    found.backlog = _backlog(console)
    kinds, total, counted = _dead_letters(client)
    found.dead_letters, found.dead_letters_total, found.dead_letters_counted = kinds, total, counted
    found.workers = sorted(live_workers(client), key=lambda w: w.name)
    return found


@router.get("/")
async def overview(request: Request, _s: SignedIn, fragment: bool = False) -> Response:
    """The whole page, or with ``fragment`` only its live part (the page's script polls it)."""
    data = await run_in_threadpool(gather, console_of(request))
    template = "overview_live.html" if fragment else "overview.html"
    return page(request, template, view=data, nav="overview")
