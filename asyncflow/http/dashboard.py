"""The web dashboard at /ui: server-rendered pages, readable with JavaScript off.

Three pages: task types (counts by status, recent throughput, paused state,
settings), a task list (filters and paging) and a task (context, schedule log,
lease, history), with the actions of asyncflow.http.actions as forms (each
carries the CSRF token of asyncflow.http.csrf). Jinja2 escapes every value.
With JavaScript on, static/live.js re-fetches the page's live part
(`?partial=1`, the same server-rendered HTML) every few seconds. Counts come
from the periodic queue-depth count, never from a COUNT(*) per page view;
lists and tasks are read live (indexed reads).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from asyncflow.core.control import TaskControl
from asyncflow.core.model import Task, TaskFilter, TaskStatus
from asyncflow.errors import AsyncflowError, InvalidArgument
from asyncflow.http import actions
from asyncflow.http.csrf import CsrfGuard
from asyncflow.http.depth import QueueDepth
from asyncflow.server.auth.scope import CALLER

HERE = Path(__file__).parent
REFRESH_SECONDS = 5
STATUSES = {status.name.lower(): status for status in TaskStatus}
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "UNAVAILABLE": 503}
HEADERS = {
    # Scripts and styles only from this server (no inline script), no framing,
    # forms only to this server.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def when(seconds: int | None) -> str:
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def history(task: Task) -> list[dict[str, Any]]:
    """The schedule log's entries, newest first (policy._log's format)."""
    try:
        log = json.loads(task.schedule_log) if task.schedule_log else {}
    except ValueError:
        return []
    if not isinstance(log, dict):
        return []
    entries = [*log.get("history", []), *([log["last"]] if "last" in log else [])]
    return [e for e in reversed(entries) if isinstance(e, dict)]


def here(request: web.Request) -> str:
    """The full page's path and query (where a form sends the browser back to)."""
    query = [(k, v) for k, v in request.query.items() if k != "partial"]
    return str(request.rel_url.with_query(query))


def pretty(text: str) -> str:
    """JSON indented for reading; anything else as it is."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


class Dashboard:
    def __init__(self, control: TaskControl, depth: QueueDepth,
                 session: Callable[[web.Request], str] | None = None) -> None:  # fmt: skip
        """`session(request)`: the login session's id, "" without one (asyncflow.http.auth)."""
        self.core = control.core
        self.depth = depth
        self.csrf = CsrfGuard("/ui", binding=session)
        """Its middleware guards every POST under /ui (HttpSide installs it)."""
        self.action_routes = actions.ActionRoutes(control)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters.update(when=when, pretty=pretty)

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/", self.home),
            web.get("/ui", self.types),
            web.get("/ui/tasks", self.tasks),
            web.get("/ui/tasks/{task_id}", self.task),
            web.static("/ui/static", HERE / "static"),
            *self.action_routes.routes(),
        ]

    def render(self, request: web.Request, template: str, status: int = 200, **values: Any
               ) -> web.Response:  # fmt: skip
        partial = request.query.get("partial") == "1"
        # A flash message is shown once, by the next full page (the redirect's).
        flash = None if partial else actions.take_flash(request)
        html = self.env.get_template(template).render(
            partial=partial,
            refresh_seconds=REFRESH_SECONDS,
            now=self.core.clock.now(),
            csrf_token=self.csrf.token(request),
            flash=flash,
            caller=CALLER.get(),
            **values,
        )
        response = web.Response(text=html, content_type="text/html", status=status,
                                headers=HEADERS)  # fmt: skip
        if flash is not None:
            actions.clear_flash(response)
        return response

    def problem(self, request: web.Request, error: AsyncflowError) -> web.Response:
        status = HTTP_STATUS.get(error.code, 500)
        return self.render(request, "problem.html", status=status, error=error)

    async def home(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui")

    async def types(self, request: web.Request) -> web.Response:
        try:
            configs = await self.core.list_types()
        except AsyncflowError as error:
            return self.problem(request, error)
        rows = [
            {
                "config": config,
                "counts": self.depth.counts.get(config.task_type),
                "throughput": self.depth.throughput(config.task_type),
                "actions": [a for a in actions.TYPE_ACTIONS if a.applies(config)],
            }
            for config in configs
        ]
        return self.render(
            request, "types.html", rows=rows, statuses=list(TaskStatus),
            counted_at=self.depth.counted_at, interval=self.depth.interval,
        )  # fmt: skip

    async def tasks(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            configs = {c.task_type: c for c in await self.core.list_types()}
            types = list(configs)
            task_type = query.get("task_type") or (types[0] if types else "")
            status_name = query.get("status", "")
            if status_name and status_name not in STATUSES:
                raise InvalidArgument(
                    f"status {status_name!r} is not a task status", field="status"
                )
            where = TaskFilter(
                status=STATUSES.get(status_name),
                task_stage=query.get("stage") or None,
                user_id=query.get("user_id") or None,
            )
            tasks: list[Task] = []
            next_token = ""
            if task_type:
                tasks, next_token = await self.core.list_tasks(
                    task_type, where, 0, query.get("page_token", "")
                )
        except AsyncflowError as error:
            return self.problem(request, error)
        filters = {"task_type": task_type, "status": status_name, "stage": query.get("stage", ""),
                   "user_id": query.get("user_id", "")}  # fmt: skip
        config = configs.get(task_type)
        return self.render(
            request, "tasks.html", types=types, tasks=tasks, filters=filters,
            statuses=list(STATUSES), next_token=next_token,
            paged=bool(query.get("page_token")), config=config,
            type_actions=[a for a in actions.TYPE_ACTIONS if config and a.applies(config)],
            here=here(request),
        )  # fmt: skip

    async def task(self, request: web.Request) -> web.Response:
        try:
            task = await self.core.get_task(request.match_info["task_id"])
        except AsyncflowError as error:
            return self.problem(request, error)
        return self.render(
            request, "task.html", task=task, history=history(task),
            actions=[a for a in actions.TASK_ACTIONS if a.applies(task)],
        )  # fmt: skip
