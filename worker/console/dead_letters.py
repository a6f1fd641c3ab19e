"""Dead letters: list, inspect, and settle them -- replay, resolve (created / not created), delete.

Every action goes through a confirmation page that says what it will do,
then a POST carrying the CSRF token, from an operator's session. The
actions are `worker.delivery.settle`'s (as the CLI's): replay keeps the idempotency key (a job whose
instance exists after all is answered ``duplicate``), resolve tells the
ledger what a person found in the engine, delete only forgets the entry.
The entry page shows no job variables: they are on the job's own page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from worker.console.context import Console, Operator, SignedIn, console_of
from worker.console.render import page
from worker.delivery import dlq
from worker.errors import SettleError
from worker.keys import idempotency_key

router = APIRouter()

LIST_LIMIT = 200
ACTIONS = {
    "replay": (
        "Replay",
        "Enqueue this job again as a new job with the same idempotency key. If its instance "
        "was created after all, the new job is answered duplicate; nothing starts twice.",
    ),
    "created": (
        "Resolve: it was created",
        "Record that the engine did start this job's instance, with the id below. The ledger "
        "then answers later jobs with this key as duplicates of it, and the entry leaves "
        "the store.",
    ),
    "not_created": (
        "Resolve: it was not created",
        "Record that the engine did not start this job's instance. The entry stays, marked: "
        "its replay then sends without searching first.",
    ),
    "delete": (
        "Delete",
        "Forget this dead letter without telling the ledger anything. Use it for entries "
        "that need nothing more.",
    ),
}


def _shown(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry without its job's variables (they belong on the job's page only)."""
    job = entry.get("job")
    summary = {}
    if isinstance(job, dict):
        summary = {k: v for k, v in job.items() if k not in ("variables", "options")}
        summary["variables"] = len(job.get("variables") or {})
        if job.get("target") and job.get("process"):
            summary["idempotency_key"] = idempotency_key(
                target=str(job["target"]),
                process=str(job["process"]),
                explicit=job.get("idempotency_key"),
                business_key=job.get("business_key"),
                job_id=str(entry.get("job_id")),
            )
    return {**entry, "job": summary}


def _entry(console: Console, job_id: str) -> dict[str, Any]:
    entry = dlq.DeadLetters(console.client()).get(job_id)
    if entry is None:
        raise HTTPException(404, "No such dead letter (settled already?)")
    return _shown(entry)


@router.get("/dead-letters")
async def dead_letters(request: Request, _s: SignedIn, done: str = "") -> Response:
    console = console_of(request)

    def read() -> tuple[list[dict[str, Any]], int]:
        store = dlq.DeadLetters(console.client())
        return [_shown(e) for e in store.list(LIST_LIMIT)], store.size()

    entries, total = await run_in_threadpool(read)
    return page(
        request,
        "dead_letters.html",
        nav="dead-letters",
        entries=entries,
        total=total,
        limit=LIST_LIMIT,
        done=done[:300],
    )


@router.get("/dead-letters/{job_id}")
async def entry_page(request: Request, _s: SignedIn, job_id: str) -> Response:
    entry = await run_in_threadpool(_entry, console_of(request), job_id)
    return page(request, "dead_letter.html", nav="dead-letters", entry=entry, actions=ACTIONS)


@router.get("/dead-letters/{job_id}/{action}")
async def confirm(
    request: Request, _s: SignedIn, job_id: str, action: str, instance_id: str = ""
) -> Response:
    if action not in ACTIONS:
        raise HTTPException(404, "No such action")
    entry = await run_in_threadpool(_entry, console_of(request), job_id)
    error = None
    if action == "created" and not instance_id.strip():
        error = "give the id of the instance the engine created"
    return page(
        request,
        "confirm_dead_letter.html",
        400 if error else 200,
        nav="dead-letters",
        entry=entry,
        action=action,
        title=ACTIONS[action][0],
        explain=ACTIONS[action][1],
        instance_id=instance_id.strip(),
        error=error,
    )


def _act(console: Console, job_id: str, action: str, instance_id: str, by: str) -> str:
    """The CLI's settling (`worker.delivery.settle`): a replay looks the instance up first where
    the engine can be searched, and refuses where an instance may exist and it cannot."""
    from worker import producer
    from worker.delivery import settle
    from worker.delivery.ledger import Ledger
    from worker.runtime import result_store

    client = console.client()
    dead_letters = dlq.DeadLetters(client)
    if action == "delete":
        if not dead_letters.remove(job_id):
            raise KeyError(job_id)
        return f"deleted {job_id}"
    cfg = console.settings
    ledger = Ledger(client, cfg.lease_seconds, cfg.retention_days)
    targets = console.intake.targets()
    entry = dead_letters.get(job_id)
    if entry is None:
        raise KeyError(job_id)
    if action == "replay":
        done = settle.replay(
            dead_letters,
            ledger,
            targets,
            lambda job: console.intake.publish([producer.prepare(job)])[0],
            job_id,
        )
        return f"replayed {job_id} as job {done.new_job_id}: {done.note}"
    if action == "created":
        settle.resolve_created(
            dead_letters, ledger, result_store(cfg), targets, job_id, instance_id
        )
        dlq.remember_resolution(client, job_id, "created", instance_id, by, entry)
        return f"resolved {job_id}: created, instance {instance_id}"
    settle.resolve_not_created(dead_letters, job_id)
    dlq.remember_resolution(client, job_id, "not_created", None, by, entry)
    return f"resolved {job_id}: not created; its replay now sends it"


@router.post("/dead-letters/{job_id}/{action}")
async def act(request: Request, session: Operator, job_id: str, action: str) -> Response:
    if action not in ACTIONS:
        raise HTTPException(404, "No such action")
    console = console_of(request)
    form = await request.form()
    instance_id = str(form.get("instance_id") or "").strip()
    assert session.user is not None
    try:
        done = await run_in_threadpool(
            _act, console, job_id, action, instance_id, session.user.name
        )
    except KeyError:
        raise HTTPException(404, "No such dead letter (settled already?)") from None
    except SettleError as exc:
        entry = await run_in_threadpool(_entry, console, job_id)
        return page(
            request,
            "confirm_dead_letter.html",
            409,
            nav="dead-letters",
            entry=entry,
            action=action,
            title=ACTIONS[action][0],
            explain=ACTIONS[action][1],
            instance_id=instance_id,
            error=str(exc),
        )
    root = request.scope.get("root_path", "")
    from urllib.parse import quote

    return RedirectResponse(f"{root}/dead-letters?done={quote(done)}", status_code=303)
