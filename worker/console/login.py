"""Signing in with a token of ``STARTPROC_INTAKE_TOKENS``, and signing out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from worker.console.context import Refused, SignedIn, console_of
from worker.console.render import page
from worker.console.session import Session, csrf_ok

router = APIRouter()


def _local(next_url: str, root: str) -> str:
    """Only a path inside the console: ``next`` must not send anyone elsewhere."""
    if next_url.startswith(root + "/") and not next_url.startswith("//") and "\\" not in next_url:
        return next_url
    return root + "/"


@router.get("/login")
async def login_form(request: Request, next: str = "") -> Response:
    return page(request, "login.html", next=next, error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    session: Session = request.state.session
    next_url = str(form.get("next") or "")
    if not csrf_ok(session, str(form.get("csrf") or "")):
        raise Refused("the sign-in form is out of date; reload it and try again")
    console = console_of(request)
    signed = console.sessions.sign_in(str(form.get("token") or "").strip())
    if signed is None:
        return page(request, "login.html", 401, next=next_url, error="That token is not valid.")
    root = request.scope.get("root_path", "")
    response = RedirectResponse(_local(next_url, root), status_code=303)
    console.sessions.save(response, signed)
    return response


@router.post("/logout")
async def logout(request: Request, session: SignedIn) -> Response:
    form = await request.form()
    if not csrf_ok(session, str(form.get("csrf") or "")):
        raise Refused("the form is out of date; reload the page")
    root = request.scope.get("root_path", "")
    response = RedirectResponse(f"{root}/login", status_code=303)
    console_of(request).sessions.clear(response)
    return response
