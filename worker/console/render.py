"""Rendering pages: one Jinja2 environment with autoescape on, and the filters the pages use.

Autoescape is on for every template (not only ``.html``), so any text that
came from a job, an engine or a file is escaped wherever it lands; nothing
is marked safe. Every response carries headers that keep the pages to
themselves: no inline scripts or styles (CSP), no framing, no caching.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from worker.console.session import Session

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(value: Any) -> str:
    """A time as ``2026-12-05 14:03:07Z`` (epoch seconds, datetime or ISO text)."""
    if value in (None, ""):
        return ""
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(float(value), UTC)
    elif isinstance(value, datetime):
        moment = value.astimezone(UTC)
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def ago(seconds: Any) -> str:
    """``42 s``, ``3 min``, ``2.5 h``: an age for people."""
    if seconds is None:
        return ""
    value = float(seconds)
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def since(epoch: Any) -> str:
    return ago(max(time.time() - float(epoch), 0.0)) if epoch not in (None, "") else ""


def percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.1f} %"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def build_environment() -> Environment:
    env = Environment(
        loader=PackageLoader("worker.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, ago=ago, since=since, percent=percent, pretty=pretty)
    return env


ENV = build_environment()


def page(
    request: Request,
    template: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` with the session, the CSRF token and the console's base path."""
    session = _session(request)
    body = ENV.get_template(template).render(
        ui=request.scope.get("root_path", ""),
        session=session,
        user=session.user,
        csrf=session.csrf,
        **context,
    )
    response = HTMLResponse(body, status_code=status, headers=headers)
    if getattr(request.state, "new_session", False):
        request.app.state.console.sessions.save(response, session)
    return response


def _session(request: Request) -> Session:
    """The request's session; an error page for an unknown path has not loaded one yet."""
    session: Session | None = getattr(request.state, "session", None)
    if session is None:
        sessions = request.app.state.console.sessions
        session = sessions.load(request)
        request.state.new_session = session is None
        session = session or sessions.anonymous()
        request.state.session = session
    return session
