"""Dashboard actions: retry and cancel a task, pause and resume a type.

Each is a button in an HTML form (so it works with JavaScript off) that POSTs
to its own route: /ui/tasks/{task_id}/{name} or /ui/types/{task_type}/{name}.
The route calls TaskControl, the same object the gRPC operator RPCs call (so
the same rules decide), then redirects back with 303 (POST/redirect/GET) and a
flash message: what happened, or the core's reason when it refused. A page
shows a button only where its `applies` holds (from the same status sets the
core decides with); the core still decides, e.g. when the task changed since
the page was drawn. Every POST passes the CSRF guard (asyncflow.http.csrf)
before it gets here.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import quote, urlsplit

from aiohttp import web

from asyncflow.core.control import CANCELLABLE, RETRYABLE, TaskControl
from asyncflow.core.model import Task, TaskTypeConfig
from asyncflow.errors import AsyncflowError

Subject = TypeVar("Subject", Task, TaskTypeConfig)
Form = Mapping[str, object]

FLASH_COOKIE = "asyncflow_flash"
FLASH_MAX_CHARS = 1000
"""A core message is short; this only keeps the cookie far below 4 KiB."""


@dataclass(frozen=True)
class Field(Generic[Subject]):
    """An optional text input of an action's form."""

    name: str
    label: str
    hint: Callable[[Subject], str]
    """Its placeholder (what leaving it empty means)."""


@dataclass(frozen=True)
class Action(Generic[Subject]):
    """A button on a task's page (Subject = Task) or on a type (Subject = TaskTypeConfig)."""

    name: str
    label: str
    applies: Callable[[Subject], bool]
    run: Callable[[TaskControl, str, Form], Awaitable[str]]
    """Do it on the task id or type named in the URL; returns the flash message."""
    field: Field[Subject] | None = None


def text(form: Form, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


async def retry(control: TaskControl, task_id: str, form: Form) -> str:
    task = await control.retry_task(task_id, text(form, "task_stage") or None)
    return f"Task {task.task_id} retried: {task.status.name} at stage “{task.task_stage}”."


async def cancel(control: TaskControl, task_id: str, form: Form) -> str:
    task = await control.cancel_task(task_id, text(form, "reason"))
    return f"Task {task.task_id} is {task.status.name}."


async def pause(control: TaskControl, task_type: str, form: Form) -> str:
    await control.pause_type(task_type)
    return f"Task type {task_type} paused: none of its tasks is held or pushed until it resumes."


async def resume(control: TaskControl, task_type: str, form: Form) -> str:
    await control.resume_type(task_type)
    return f"Task type {task_type} resumed."


TASK_ACTIONS: tuple[Action[Task], ...] = (
    Action("retry", "Retry", lambda task: task.status in RETRYABLE, retry,
           Field("task_stage", "at stage", lambda task: f"{task.task_stage} (unchanged)")),
    Action("cancel", "Cancel", lambda task: task.status in CANCELLABLE, cancel,
           Field("reason", "reason", lambda task: "optional")),
)  # fmt: skip
TYPE_ACTIONS: tuple[Action[TaskTypeConfig], ...] = (
    Action("pause", "Pause", lambda config: not config.paused, pause),
    Action("resume", "Resume", lambda config: config.paused, resume),
)
_TASK = {action.name: action for action in TASK_ACTIONS}
_TYPE = {action.name: action for action in TYPE_ACTIONS}


class ActionRoutes:
    def __init__(self, control: TaskControl) -> None:
        self.control = control

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.post("/ui/tasks/{task_id}/{action}", self.on_task),
            web.post("/ui/types/{task_type}/{action}", self.on_type),
        ]

    async def on_task(self, request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        action = _TASK.get(request.match_info["action"])
        return await self._run(request, action, task_id, f"/ui/tasks/{quote(task_id, safe='')}")

    async def on_type(self, request: web.Request) -> web.Response:
        action = _TYPE.get(request.match_info["action"])
        form = await request.post()
        back = form.get("back")
        back = back if isinstance(back, str) and local(back) else "/ui"
        return await self._run(request, action, request.match_info["task_type"], back)

    async def _run(self, request: web.Request, action: Action[Task] | Action[TaskTypeConfig]
                   | None, subject: str, back: str) -> web.Response:  # fmt: skip
        if action is None:
            raise web.HTTPNotFound(text=f"no action {request.match_info['action']!r}\n")
        try:
            message = ("ok", await action.run(self.control, subject, await request.post()))
        except AsyncflowError as error:  # refused: the core's own words
            message = ("error", f"{action.label} refused: {error.message}")
        response = web.Response(status=303, headers={"Location": back})
        set_flash(response, *message)
        return response


def local(path: str) -> bool:
    """A path of the dashboard's own (where a form may send the browser back to)."""
    parts = urlsplit(path)
    return (
        not parts.scheme and not parts.netloc and path.isprintable() and "\\" not in path
        and (parts.path == "/ui" or parts.path.startswith("/ui/"))
    )  # fmt: skip


# -- flash messages: one short-lived cookie, shown once by the next full page --------


def set_flash(response: web.StreamResponse, kind: str, message: str) -> None:
    value = json.dumps([kind, message[:FLASH_MAX_CHARS]], ensure_ascii=False).encode()
    response.set_cookie(FLASH_COOKIE, base64.urlsafe_b64encode(value).decode(), path="/ui",
                        max_age=60, httponly=True, samesite="Strict")  # fmt: skip


def take_flash(request: web.Request) -> tuple[str, str] | None:
    """The flash message the request carries: (kind "ok" or "error", text)."""
    value = request.cookies.get(FLASH_COOKIE)
    if not value:
        return None
    try:
        kind, message = json.loads(base64.urlsafe_b64decode(value.encode()))
    except (ValueError, TypeError, binascii.Error):
        return None
    if kind not in ("ok", "error") or not isinstance(message, str):
        return None
    return kind, message


def clear_flash(response: web.StreamResponse) -> None:
    response.del_cookie(FLASH_COOKIE, path="/ui")
