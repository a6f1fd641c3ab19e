"""Finding a job (job id or its first characters, idempotency key, business key) and its page.

The search reuses the results index (`worker.delivery.results.ResultStore`): an exact
job id is one read, a prefix and a key under any target SCAN it, as
``startproc status`` does. A business key is looked up as the keys our
producers derive from it (``target:process:key``, ``batch:<id>:key``) end
with it, then checked against each result's own business key.

A job's variables are shown on its own page only, and only where they are
still kept: in the in-flight registry (not decided yet) or in the
dead-letter store. Results never carry them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from worker import keys
from worker.console.context import Console, SignedIn, console_of
from worker.console.render import page
from worker.delivery import dlq
from worker.models import Result

router = APIRouter()

MAX_FOUND = 20
JOB_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")


@dataclass
class JobView:
    job_id: str
    result: Result | None = None
    known: bool = False
    job: dict[str, Any] | None = None
    job_source: str = ""
    dead_letter: dict[str, Any] | None = None
    resolution: dict[str, Any] | None = None
    deliveries: int = 0
    latency: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _by_business_key(client: redis.Redis, console: Console, value: str) -> list[Result]:
    pattern = f"{keys.PREFIX}:result-by-key:*:{keys.glob_literal(value)}"
    found: list[Result] = []
    for name in client.scan_iter(pattern, count=1000):
        job_id = client.get(name)
        result = console.intake.store.get(str(job_id)) if job_id else None
        if result is not None and result.business_key == value:
            found.append(result)
            if len(found) >= MAX_FOUND:
                break
    return found


def search(console: Console, query: str) -> tuple[list[Result], list[str]]:
    """Results matching ``query`` as a job id, a job id prefix, a key or a business key.

    Returns the results and the ids of matching jobs that have none yet.
    """
    store = console.intake.store
    client = console.client()
    results: dict[str, Result] = {}
    pending: list[str] = []
    if set(query) <= JOB_ID_CHARS:
        for job_id in store.job_ids_starting(query, MAX_FOUND):
            result, known = store.lookup(job_id)
            if result is not None:
                results[job_id] = result
            elif known:
                pending.append(job_id)
    by_key = store.get_by_key(query)
    if by_key is not None:
        results[by_key.job_id] = by_key
    for result in _by_business_key(client, console, query):
        results[result.job_id] = result
    ordered = sorted(results.values(), key=lambda r: r.finished_at, reverse=True)
    return ordered[:MAX_FOUND], pending[:MAX_FOUND]


def job_view(console: Console, job_id: str) -> JobView:
    client = console.client()
    view = JobView(job_id)
    view.result, view.known = console.intake.store.lookup(job_id)
    view.dead_letter = dlq.DeadLetters(client).get(job_id)
    view.resolution = dlq.resolution(job_id, client)
    raw = client.hget(keys.INFLIGHT, job_id)
    if raw:
        view.job, view.job_source = json.loads(str(raw)), "in-flight registry"
    elif view.dead_letter and isinstance(view.dead_letter.get("job"), dict):
        view.job, view.job_source = view.dead_letter["job"], "dead-letter store"
    elif view.resolution and isinstance((view.resolution.get("entry") or {}).get("job"), dict):
        view.job, view.job_source = view.resolution["entry"]["job"], "resolved dead letter"
    view.deliveries = int(str(client.get(keys.deliveries_key(job_id)) or 0))
    result = view.result
    if result is not None and result.enqueued_at is not None:
        view.latency = (result.finished_at - result.enqueued_at).total_seconds()
    view.known = view.known or view.dead_letter is not None or view.resolution is not None
    return view


@router.get("/jobs")
async def find(request: Request, _s: SignedIn, q: str = "") -> Response:
    query = q.strip()[:512]
    if not query:
        return page(request, "jobs.html", nav="jobs", q="", results=[], pending=[], searched=False)
    console = console_of(request)
    results, pending = await run_in_threadpool(search, console, query)
    found = [r.job_id for r in results] + pending
    if len(found) == 1 and found[0].startswith(query):  # one job by its id: straight to it
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/jobs/{found[0]}", status_code=303)
    return page(
        request, "jobs.html", nav="jobs", q=query, results=results, pending=pending, searched=True
    )


@router.get("/jobs/{job_id}")
async def job_page(request: Request, _s: SignedIn, job_id: str) -> Response:
    if not job_id or len(job_id) > 128 or not set(job_id) <= JOB_ID_CHARS:
        return page(request, "error.html", 404, title="Not Found", message="no such job id")
    view = await run_in_threadpool(job_view, console_of(request), job_id)
    status = 200 if view.known else 404
    return page(request, "job.html", status, nav="jobs", view=view)
