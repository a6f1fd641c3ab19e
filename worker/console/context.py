"""What every console page shares: the `Console` state and the session dependencies.

Apart from `worker.console.app` (which builds the app and mounts the pages),
so the pages import this module and the app imports the pages, never back.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Annotated

import redis
from fastapi import Depends, Request

from worker.config import Settings
from worker.console.batch_runs import BatchRuns
from worker.console.session import Session, Sessions, csrf_ok
from worker.intake.context import Intake


@dataclass
class Console:
    """What the pages share: settings, the intake's services, sessions, batch runs."""

    settings: Settings
    intake: Intake
    sessions: Sessions
    runs: BatchRuns

    def client(self) -> redis.Redis:
        """A fail-fast client (seconds, not minutes, when Redis is away)."""
        return self.intake.probe(self.settings.require_redis())

    @cached_property
    def broker_redis(self) -> redis.Redis | None:
        from worker.metrics import broker_redis_url

        url = broker_redis_url(self.settings.broker_url)
        return self.intake.probe(url) if url else None


class SignInRequired(Exception):
    """The page needs a signed-in person; answered with a redirect to the sign-in form."""


class Refused(Exception):
    """A change the session may not make (read-only role, or a missing/wrong CSRF token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


async def attach_session(request: Request) -> None:
    """Every request gets a session: the cookie's, or a fresh anonymous one (set on response)."""
    console = console_of(request)
    session = console.sessions.load(request)
    request.state.new_session = session is None
    request.state.session = session or console.sessions.anonymous()


def signed_in(request: Request) -> Session:
    session: Session = request.state.session
    if session.user is None:
        raise SignInRequired
    return session


SignedIn = Annotated[Session, Depends(signed_in)]


async def may_change(request: Request, session: SignedIn) -> Session:
    """For every POST that changes something: a valid CSRF token and an operator's token."""
    form = await request.form()
    if not csrf_ok(session, str(form.get("csrf") or "")):
        raise Refused("the form is out of date (its CSRF token does not match); reload the page")
    if not session.can_change:
        assert session.user is not None
        raise Refused(
            f"you are signed in with {session.user.name!r}, a read-only token (role viewer): "
            "it may look but not change anything"
        )
    return session


Operator = Annotated[Session, Depends(may_change)]
