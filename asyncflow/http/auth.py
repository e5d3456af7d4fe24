"""The HTTP side's auth: the gRPC side's tokens, roles, limits and audit.

With `[auth] enabled`, every route is mapped to the TaskService RPC whose roles
apply (ROUTES; a route missing from it is refused: fail closed):

- `/v1/*` and `/metrics` take `Authorization: Bearer <token>`;
- the dashboard (`/ui`) takes the same header, or a session: its login page
  asks for a token once and sets a session cookie (HttpOnly, SameSite=Strict;
  Secure over HTTPS) naming a server-side session that keeps the token's hash
  only. A session lasts SESSION_SECONDS, ends at logout, and ends when its
  token leaves the tokens file (SIGHUP). Sessions are per replica.
- `/healthz`, `/readyz`, the login page and static files stay open, and
  `/metrics` too with `[auth] metrics_open`.

The caller is put in asyncflow.server.auth.scope.CALLER, so that the worker
routes check task types as the gRPC ones do.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Handler

from asyncflow.errors import AsyncflowError, PermissionDenied, RateLimited, Unauthenticated
from asyncflow.server.auth.guard import BEARER, Guard, audit
from asyncflow.server.auth.roles import ADMIN_ACTIONS, allows
from asyncflow.server.auth.scope import CALLER
from asyncflow.server.auth.tokens import Caller

SESSION_COOKIE = "asyncflow_session"
SESSION_SECONDS = 12 * 3600
LOGIN = "/ui/login"

ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/v1/register_task"): "RegisterTaskType",
    ("POST", "/v1/create_task"): "CreateTask",
    ("POST", "/v1/hold_tasks"): "HoldTasks",
    ("POST", "/v1/set_task"): "SetTask",
    ("GET", "/v1/get_task"): "GetTask",
    ("GET", "/v1/get_task_list"): "ListTasks",
    ("GET", "/v1/get_task_schedule_cfg_list"): "ListTaskTypes",
    ("GET", "/v1/get_task_counts_by_type"): "CountTasks",
    ("GET", "/v1/ping"): "Ping",
    ("GET", "/metrics"): "CountTasks",
    ("GET", "/"): "ListTaskTypes",
    ("GET", "/ui"): "ListTaskTypes",
    ("GET", "/ui/tasks"): "ListTasks",
    ("GET", "/ui/tasks/{task_id}"): "GetTask",
    ("POST", "/ui/tasks/{task_id}/{action}"): "action",
    ("POST", "/ui/types/{task_type}/{action}"): "action",
}
"""(HTTP method, route pattern) -> the RPC whose roles apply ("action": ACTIONS)."""
ACTIONS = {"retry": "RetryTask", "cancel": "CancelTask", "pause": "PauseTaskType",
           "resume": "ResumeTaskType"}  # fmt: skip
"""The dashboard's action buttons (asyncflow.http.actions) by their path's last part."""
OPEN = frozenset({("GET", "/healthz"), ("GET", "/readyz"), ("GET", LOGIN), ("POST", LOGIN),
                  ("POST", "/ui/logout"), ("GET", "/ui/static")})  # fmt: skip
TARGETS = ("task_id", "task_type")


@dataclass
class Session:
    digest: bytes
    """SHA-256 of the token it logged in with (never the token)."""
    expires: float


class Sessions:
    """Dashboard logins of this replica, by random id."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._sessions: dict[str, Session] = {}

    def open(self, token: str) -> str:
        self._forget_expired()
        key = secrets.token_urlsafe(32)
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        self._sessions[key] = Session(digest, self._now() + SESSION_SECONDS)
        return key

    def digest(self, key: str) -> bytes | None:
        session = self._sessions.get(key)
        if session is None or session.expires <= self._now():
            return None
        return session.digest

    def close(self, key: str) -> None:
        self._sessions.pop(key, None)

    def _forget_expired(self) -> None:
        now = self._now()
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]


Render = Callable[..., web.Response]
"""Dashboard.render: (request, template, status=..., **values) -> a page."""


class HttpAuth:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.sessions = Sessions()
        self._render: Render | None = None

    def routes(self, render: Render) -> list[web.RouteDef]:
        """The login page, its form and logout (the CSRF guard checks both forms)."""
        self._render = render
        return [web.get(LOGIN, self.login_page), web.post(LOGIN, self.log_in),
                web.post("/ui/logout", self.log_out)]  # fmt: skip

    async def login_page(self, request: web.Request) -> web.Response:
        return self._page(request, safe_next(request.query.get("next", "")), "")

    async def log_in(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token, after = form.get("token"), form.get("next")
        after = safe_next(after if isinstance(after, str) else "")
        caller = self.guard.credentials.by_token(token) if isinstance(token, str) else None
        if caller is None:
            refused = Unauthenticated("unknown token")
            self.guard.refused(f"POST {LOGIN}", str(request.remote), refused)
            return self._page(request, after, "That token is not known here.", status=401)
        response = web.Response(status=303, headers={"Location": after})
        assert isinstance(token, str)
        response.set_cookie(SESSION_COOKIE, self.sessions.open(token), path="/",
                            httponly=True, samesite="Strict", secure=request.secure,
                            max_age=SESSION_SECONDS)  # fmt: skip
        return response

    async def log_out(self, request: web.Request) -> web.StreamResponse:
        self.sessions.close(request.cookies.get(SESSION_COOKIE, ""))
        response = web.Response(status=303, headers={"Location": LOGIN})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    def _page(self, request: web.Request, after: str, problem: str, status: int = 200
              ) -> web.Response:  # fmt: skip
        assert self._render is not None
        return self._render(request, "login.html", status=status, next=after, problem=problem)

    def session_key(self, request: web.Request) -> str:
        """The request's valid session id, or "" (the CSRF tokens' binding)."""
        key = request.cookies.get(SESSION_COOKIE, "")
        return key if key and self.sessions.digest(key) is not None else ""

    def identify(self, request: web.Request) -> Caller:
        credentials = self.guard.credentials
        header = request.headers.getall("Authorization", [])
        if header:
            match = BEARER.fullmatch(header[0]) if len(header) == 1 else None
            if match is None:
                raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
            caller = credentials.by_token(match.group(1))
            if caller is None:
                raise Unauthenticated("unknown token (revoked, or from another server?)")
            return caller
        key = request.cookies.get(SESSION_COOKIE, "")
        digest = self.sessions.digest(key) if key else None
        if digest is not None:
            caller = credentials.by_digest(digest)
            if caller is not None:
                return caller
            self.sessions.close(key)  # its token was removed from the file
        raise Unauthenticated("no credentials: send 'Authorization: Bearer <token>' or log in")

    def rpc(self, request: web.Request) -> str | None:
        """The RPC whose roles a request needs; "" for open routes; None: refused."""
        info = request.match_info
        if info.http_exception is not None:
            return ""  # no such route: aiohttp answers 404/405 and no handler runs
        pattern = info.route.resource.canonical if info.route.resource else ""
        verb = "GET" if request.method == "HEAD" else request.method
        if (verb, pattern) in OPEN:
            return ""
        if pattern == "/metrics" and self.guard.auth.metrics_open:
            return ""
        rpc = ROUTES.get((verb, pattern))
        if rpc == "action":
            return ACTIONS.get(info.get("action", ""))
        return rpc

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        rpc = self.rpc(request)
        if rpc == "":
            return await handler(request)
        try:
            caller = self.identify(request)
            if rpc is None:
                raise PermissionDenied(f"{request.method} {request.path[:200]} is not served")
            if not allows(caller.roles, rpc):
                roles = ", ".join(sorted(caller.roles))
                raise PermissionDenied(f"{caller.name} (roles {roles}) may not call {rpc}")
            if self.guard.quotas.rate is not None:
                self.guard.quotas.rate.take(f"{caller.via}:{caller.name}")
        except AsyncflowError as refused:
            where = f"{request.method} {request.path[:200]}"
            self.guard.refused(where, str(request.remote), refused)
            return self.refusal(request, refused)
        CALLER.set(caller)
        response = await handler(request)
        if rpc in ADMIN_ACTIONS:
            acted_on = {name: request.match_info.get(name, "") for name in TARGETS}
            audit(caller, rpc, acted_on, f"HTTP {response.status}")
        return response

    def refusal(self, request: web.Request, error: AsyncflowError) -> web.StreamResponse:
        page = request.path == "/" or request.path.startswith("/ui")
        if isinstance(error, Unauthenticated) and page and request.method in ("GET", "HEAD"):
            query = urlencode({"next": str(request.rel_url)})
            raise web.HTTPSeeOther(f"{LOGIN}?{query}")
        status = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}.get(error.code, 429)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        if isinstance(error, RateLimited) and error.retry_delay is not None:
            headers["Retry-After"] = str(max(1, round(error.retry_delay)))
        body = {"error": {"code": error.code, "reason": error.reason, "message": error.message}}
        return web.json_response(body, status=status, headers=headers)


def safe_next(value: str) -> str:
    """Where to go after login: a path of the dashboard only (never another site)."""
    if value.startswith("/ui") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui"
