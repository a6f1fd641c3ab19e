"""IBM Blueworks Live ``LaunchInstance`` emulator.

``POST /scr/api/LaunchInstance?version=20110917`` with the ``instance`` JSON
form-encoded in the body (seed 003's ``--data-urlencode``) or as a query
parameter. Validated: version, ``app.id`` deployed, ``app.subject`` non-empty,
``app.attachments`` an array of known attachment ids, ``app.tasks`` (each with
a name; ids must be tasks of the app, ``assignedTo`` a known user). The 200
body is shaped like seed 003's example (``work.id`` is the instance id).

Service ID mode (``auth.configure(type="oauth2", ..., require_on_behalf_of=True)``):
a missing ``X-On-Behalf-Of`` is 400 (a required parameter), an unknown user
401 (not authorized). When given in other modes the user must exist too.

Assumption (Blueworks' error bodies are not documented in the seed): errors
are JSON ``{"error": "<message>", "status": <code>}``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from worker.local.sandbox.base import EngineApp, Route
from worker.local.sandbox.store import Registry
from worker.local.sandbox.web import JsonDict, Reject, json_response, utc_now

API_VERSION = "20110917"
FIRST_WORK_ID = 0x5F501E134AE25
_DUE_DATE = re.compile(r"^\d{4}/\d{2}/\d{2}$")


@dataclass(frozen=True)
class User:
    id: str
    username: str
    name: str
    avatar_id: str | None = None


@dataclass(frozen=True)
class App:
    """A deployed application definition: its tasks (id → name) and attachments."""

    id: str
    name: str
    tasks: dict[str, str] = field(default_factory=dict)
    attachments: tuple[str, ...] = ()

    def view(self) -> JsonDict:
        return {"id": self.id, "name": self.name, "tasks": dict(self.tasks),
                "attachments": list(self.attachments)}


class BlueworksApp(EngineApp):
    """LaunchInstance plus the OAuth2 token endpoint."""

    name = "blueworks"
    issues_tokens = True

    def __init__(self) -> None:
        self._apps: Registry[str, App] = Registry()
        self._users: Registry[str, User] = Registry()
        super().__init__()

    def deploy(self, app_id: str = "", name: str = "", tasks: Any = None,
               attachments: Any = ()) -> JsonDict:
        """Add or replace an application; ``tasks`` maps task id → name."""
        if not app_id:
            raise ValueError("deploy needs an app_id")
        app = App(app_id, name or app_id, dict(tasks or {}), tuple(attachments))
        return self._apps.put(app_id, app).view()

    def add_user(self, user_id: str, username: str, name: str,
                 avatar_id: str | None = None) -> None:
        """Make a user known (for ``X-On-Behalf-Of`` and ``assignedTo``)."""
        self._users.put(user_id, User(user_id, username, name, avatar_id))

    def deploy_defaults(self) -> None:
        self.add_user("7f0002", "user_name@domain.com", "admin", "5f500e1260203")
        self.deploy("5f500e12a00ee", "ProcessApp with multiple tasks A",
                    {"5f501e134ae2f": "task 1"})

    def routes(self) -> list[Route]:
        return [Route("/scr/api/LaunchInstance", "POST", self._launch, "start")]

    def error_response(self, request: Request, status: int, message: str,
                       extra: JsonDict) -> Response:
        return json_response({"error": message, "status": status}, status)

    def _user(self, reference: str) -> User | None:
        """A user by id or by username (X-On-Behalf-Of names a username)."""
        return self._users.get(reference) or next(
            (u for u in self._users.values() if u.username == reference), None)

    def _launch(self, request: Request, args: dict[str, Any]) -> Response:
        starter = self._starter(request)
        version = request.args.get("version") or request.form.get("version")
        if version != API_VERSION:
            raise Reject(400, f"Parameter 'version' must be {API_VERSION}, not {version!r}")
        spec = _instance_param(request)
        app_id = spec.get("id")
        app = self._apps.get(app_id) if isinstance(app_id, str) else None
        if app is None:
            raise Reject(400, f"Unknown application id {app_id!r}")
        _check_fields(spec, app)
        tasks = self._tasks(spec, app, starter)
        work_id = f"{FIRST_WORK_ID + self.store.next_sequence() - 1:013x}"
        started_at = int(utc_now().timestamp() * 1000)
        self.record(work_id, app.id, subject=spec["subject"], details=spec.get("details"),
                    tasks=tasks, started_by=starter.id,
                    on_behalf_of=request.headers.get("X-On-Behalf-Of"), request=spec)
        users = {starter.id: starter}
        users.update({t["assignedTo"]: self._user(t["assignedTo"]) or starter for t in tasks})
        return json_response({
            "work": {
                "runtimeVersion": [str(uuid.uuid4()), work_id, 1],
                "details": spec.get("details", ""), "canManageWork": True,
                "name": f"{app.name} - {spec['subject']}", "subject": spec["subject"],
                "tasks": tasks, "attachments": [{"id": a["id"]} for a in spec["attachments"]],
                "status": "Active", "comments": [], "startedAt": started_at,
                "startedBy": starter.id, "id": work_id, "appId": app.id,
            },
            "app": {"detailsTitle": None, "type": "workflow", "name": app.name, "id": app.id,
                    "subjectTitle": None},
            "version": API_VERSION,
            "users": [_user_view(user) for user in users.values()],
        })

    def _starter(self, request: Request) -> User:
        """Who starts the work: the X-On-Behalf-Of user, else the credential's own user."""
        named = request.headers.get("X-On-Behalf-Of")
        if named is None:
            if self.auth.settings.require_on_behalf_of:
                raise Reject(400, "Header 'X-On-Behalf-Of' is required with Service ID "
                                  "credentials")
            named = "7f0002"
        user = self._user(named)
        if user is None:
            raise Reject(401, f"The user '{named}' isn't authorized to make the request")
        return user

    def _tasks(self, spec: JsonDict, app: App, starter: User) -> list[JsonDict]:
        given = spec.get("tasks")
        if given is None:
            given = [{"id": task_id, "name": name} for task_id, name in app.tasks.items()]
        tasks = []
        for task in given:
            assignee = task.get("assignedTo", starter.id)
            if self._user(assignee) is None:
                raise Reject(400, f"Unknown user {assignee!r} in app.tasks.assignedTo")
            tasks.append({"status": "NotStarted", "assignedTo": assignee, "name": task["name"],
                          "id": task.get("id") or uuid.uuid4().hex[:13],
                          "approvalStep": bool(task.get("approvalStep", False))})
        return tasks


def _instance_param(request: Request) -> JsonDict:
    raw = request.form.get("instance") or request.args.get("instance")
    if not raw:
        raise Reject(400, "Parameter 'instance' is required")
    try:
        instance = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise Reject(400, f"Parameter 'instance' is not valid JSON: {exc}") from exc
    if not (isinstance(instance, dict) and isinstance(instance.get("app"), dict)):
        raise Reject(400, "Parameter 'instance' must be an object with an 'app' object")
    app: JsonDict = instance["app"]
    return app


def _check_fields(spec: JsonDict, app: App) -> None:
    subject = spec.get("subject")
    if not (isinstance(subject, str) and subject.strip()):
        raise Reject(400, "app.subject is required")
    attachments = spec.get("attachments")
    if not isinstance(attachments, list):
        raise Reject(400, "app.attachments is required (an empty array when none)")
    for attachment in attachments:
        if not (isinstance(attachment, dict) and attachment.get("id") in app.attachments):
            raise Reject(400, f"Unknown attachment {attachment!r} in app.attachments")
    for name, kind in (("details", str), ("mailOnCompletion", bool), ("timeZoneId", str)):
        if name in spec and not isinstance(spec[name], kind):
            raise Reject(400, f"app.{name} must be a {kind.__name__}")
    tasks = spec.get("tasks")
    if tasks is not None and not isinstance(tasks, list):
        raise Reject(400, "app.tasks must be an array")
    for task in tasks or []:
        _check_task(task, app)


def _check_task(task: Any, app: App) -> None:
    if not (isinstance(task, dict) and isinstance(task.get("name"), str) and task["name"]):
        raise Reject(400, "Each app.tasks entry needs a name")
    if "id" in task and task["id"] not in app.tasks:
        raise Reject(400, f"Unknown task id {task['id']!r} for application {app.id}")
    if "approvalStep" in task and not isinstance(task["approvalStep"], bool):
        raise Reject(400, "app.tasks.approvalStep must be a boolean")
    due = task.get("dueDateExpression")
    if due is not None and not (isinstance(due, str) and _DUE_DATE.match(due)):
        raise Reject(400, "app.tasks.dueDateExpression must be yyyy/mm/dd")


def _user_view(user: User) -> JsonDict:
    view: JsonDict = {"name": user.name, "id": user.id}
    if user.avatar_id:
        view["avatarId"] = user.avatar_id
    return view
