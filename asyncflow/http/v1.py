"""The original flowsvr's HTTP JSON routes under /v1 (reference §3), on the core's rules.

Each route binds its input as gin did, calls the same TaskCore method as the
matching RPC (so fencing, validation and read-your-writes hold here too) and
answers in the original's envelope. Errors map onto the original's codes:
binding 8021, validation 8020, and the route's own code when the core refuses
or the store fails. Where asyncflow had to differ from the original (a lease
for set_task, server-side retries, idempotent create and register, ...),
docs/http-v1.md says so, route by route.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps

from aiohttp import web

from asyncflow.core.ids import IDEMPOTENCY_KEY_RE, parse_task_id
from asyncflow.core.model import (
    CreateRequest,
    Fail,
    NextStage,
    Outcome,
    Retry,
    RetryStrategy,
    Success,
    Task,
    TaskFilter,
    TaskStatus,
    TypeSettings,
)
from asyncflow.core.service import TaskCore
from asyncflow.errors import (
    AsyncflowError,
    InvalidArgument,
    TaskNotFound,
    TaskTypeNotFound,
)
from asyncflow.http.v1_shapes import (
    CREATE_TASK,
    GET_TASK_CFG,
    GET_TASK_COUNT,
    GET_TASK_INFO,
    GET_TASK_LIST,
    GET_TASK_POS,
    INPUT_INVALID,
    REGISTER_TASK,
    SET_TASK,
    SHOULD_BIND,
    Body,
    V1Error,
    bind,
    envelope,
    integer,
    schedule_cfg,
    task_data,
    task_data_in,
    text,
    worker_error,
)
from asyncflow.server.auth.scope import check_task, check_type

log = logging.getLogger(__name__)

STATUSES = frozenset(int(s) for s in TaskStatus)
Handler = Callable[["V1Routes", Body], Awaitable[web.Response]]
Answer = Callable[["V1Routes", web.Request], Awaitable[web.Response]]

SETTINGS = ("schedule_limit", "schedule_interval", "max_processing_time", "max_retry_num",
            "max_retry_interval")  # fmt: skip
"""register_task may also set these (the blog's register_task_type, never built)."""


def route(failure: int) -> Callable[[Handler], Answer]:
    """Bind the request, run the handler, and turn what it raises into the
    original's codes: InvalidArgument 8020, an unregistered type 8039 (the
    original failed to read its position row), and `failure` for the rest."""

    def decorate(handler: Handler) -> Answer:
        @wraps(handler)
        async def answer(self: V1Routes, request: web.Request) -> web.Response:
            try:
                return await handler(self, await bind(request))
            except V1Error as refused:
                return envelope(refused.code, error=refused.error)
            except AsyncflowError as error:
                code = failure
                if isinstance(error, InvalidArgument):
                    code = INPUT_INVALID
                elif isinstance(error, TaskTypeNotFound):
                    code = GET_TASK_POS
                elif isinstance(error, TaskNotFound):
                    code = GET_TASK_INFO
                if error.code in ("INTERNAL", "UNAVAILABLE"):
                    log.warning("%s failed: %s", request.path, error)
                return envelope(code, error={"reason": error.reason, "field": error.field,
                                             "message": error.message})  # fmt: skip
            except Exception:
                log.exception("%s failed unexpectedly", request.path)
                return envelope(failure, error={"reason": "INTERNAL", "field": "",
                                                "message": "internal error (logged)"})  # fmt: skip

        return answer

    return decorate


def bound(body: Body, key: str) -> str:
    """A field the original bound with `binding:"required"`, as text."""
    value = body.get(key)
    if value is None or value in ("", 0, "0"):
        raise V1Error(SHOULD_BIND, f"{key} is required (and not 0)", field=key)
    if key != "task_type":
        integer(body, key)  # 8021 unless an integer
    return str(value)


def required(value: str, field: str) -> str:
    if not value:
        raise V1Error(INPUT_INVALID, f"{field} is required", field=field)
    return value


class V1Routes:
    def __init__(self, core: TaskCore) -> None:
        self.core = core

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/register_task", self.register_task),
            web.post("/v1/create_task", self.create_task),
            web.post("/v1/hold_tasks", self.hold_tasks),
            web.post("/v1/set_task", self.set_task),
            web.get("/v1/get_task", self.get_task),
            web.get("/v1/get_task_list", self.get_task_list),
            web.get("/v1/get_task_schedule_cfg_list", self.get_task_schedule_cfg_list),
            web.get("/v1/get_task_counts_by_type", self.get_task_counts_by_type),
            web.get("/v1/ping", self.ping),
        ]

    @route(REGISTER_TASK)
    async def register_task(self, body: Body) -> web.Response:
        task_type = required(text(body, "task_type"), "task_type")
        given = {key: integer(body, key) for key in (*SETTINGS, "retry_interval")}
        interval = given.pop("retry_interval")
        strategy = None
        if interval is not None:  # the original's convention: negative means uniform
            strategy = RetryStrategy.UNIFORM if interval < 0 else RetryStrategy.PROGRESSIVE
            interval = abs(interval)
        await self.core.register_type(
            TypeSettings(task_type, retry_strategy=strategy, retry_interval=interval, **given)
        )
        return envelope()

    @route(CREATE_TASK)
    async def create_task(self, body: Body) -> web.Response:
        data = task_data_in(body)
        task_type = required(text(data, "task_type"), "task_type")
        task, _ = await self.core.create_task(
            CreateRequest(
                task_type=task_type,
                user_id=text(data, "user_id"),
                task_stage=text(data, "task_stage"),
                context=text(data, "context"),
                priority=integer(data, "priority") or 0,
                idempotency_key=idempotency_key(text(data, "task_id"), task_type),
            )
        )
        return envelope(task_id=task.task_id)

    @route(GET_TASK_LIST)
    async def hold_tasks(self, body: Body) -> web.Response:
        task_type = required(text(body, "task_type"), "task_type")
        limit = integer(body, "limit") or 0
        if limit < 0:
            raise V1Error(INPUT_INVALID, "limit must not be negative", field="limit")
        check_type(task_type)  # a worker token limited to some types
        # The original's 0 means its maximum (2000); larger values are clamped.
        tasks = await self.core.hold_tasks(task_type, limit or self.core.limits.max_hold_limit)
        return envelope(task_list=[task_data(t, with_lease=True) for t in tasks])

    @route(SET_TASK)
    async def set_task(self, body: Body) -> web.Response:
        data = task_data_in(body)
        task_id = required(text(data, "task_id"), "task_id")
        lease_token = required(text(data, "lease_token"), "lease_token")
        priority = integer(data, "priority")
        if priority is not None and priority < 0:
            raise V1Error(INPUT_INVALID, "priority must not be negative", field="priority")
        status = integer(data, "status")
        check_task(task_id)  # a worker token limited to some types
        current = await self.core.get_task(task_id)
        context = text(data, "context") if "context" in data else None
        await self.core.set_task(task_id, lease_token, outcome(current, status, data), context)
        return envelope()

    @route(GET_TASK_INFO)
    async def get_task(self, body: Body) -> web.Response:
        task_id = required(text(body, "task_id"), "task_id")
        try:
            parse_task_id(task_id)
        except InvalidArgument as malformed:  # the original's lookup failed: 8035
            raise V1Error(GET_TASK_INFO, malformed.message, field="task_id") from None
        return envelope(task_data=task_data(await self.core.get_task(task_id)))

    @route(GET_TASK_LIST)
    async def get_task_list(self, body: Body) -> web.Response:
        # gin's `binding:"required"`: absent, empty or zero fails to bind (8021).
        task_type, status_text, limit_text = (
            bound(body, k) for k in ("task_type", "status", "limit")
        )
        status, limit = int(status_text), int(limit_text)
        if status not in STATUSES:
            raise V1Error(INPUT_INVALID, f"status {status} is not 1..4", field="status")
        if limit < 0:
            raise V1Error(INPUT_INVALID, "limit must not be negative", field="limit")
        where = TaskFilter(TaskStatus(status), text(body, "task_stage") or None,
                           text(body, "user_id") or None)  # fmt: skip
        tasks, next_token = await self.core.list_tasks(
            task_type, where, limit, text(body, "page_token")
        )
        return envelope(task_list=[task_data(t) for t in tasks], next_page_token=next_token)

    @route(GET_TASK_CFG)
    async def get_task_schedule_cfg_list(self, body: Body) -> web.Response:
        configs = await self.core.list_types()
        return envelope(task_schedule_cfg_list=[schedule_cfg(c) for c in configs])

    @route(GET_TASK_COUNT)
    async def get_task_counts_by_type(self, body: Body) -> web.Response:
        task_type = required(text(body, "task_type"), "task_type")
        counts = await self.core.count_tasks(task_type)
        return envelope(
            counts=sum(counts.values()),
            status_counts={status.name.lower(): count for status, count in counts.items()},
        )

    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({"message": "pong"})


def idempotency_key(task_id: str, task_type: str) -> str:
    """A client's own task_id makes the create idempotent: a bare key
    ([A-Za-z0-9-]{1,64}), or a whole id of this type whose first part is one.
    The task gets the id `<key>_<type>_<table>`."""
    if not task_id or IDEMPOTENCY_KEY_RE.fullmatch(task_id):
        return task_id
    try:
        id_type, _ = parse_task_id(task_id)
    except InvalidArgument:
        id_type = ""
    if id_type != task_type:
        raise V1Error(
            INPUT_INVALID,
            "task_id must be a key ([A-Za-z0-9-]{1,64}) or an id <key>_<type>_<pos> of this type",
            field="task_data.task_id",
        )
    return task_id.split("_", 1)[0]


def outcome(current: Task, status: int | None, data: Body) -> Outcome:
    """What a Go worker's set_task means, from the status it reports.

    3: success. 4: failed (the error from its schedule log). 1: back to the
    queue: a retry when it counted one more retry (the server then applies the
    type's back-off, whatever order_time the worker computed), else the next
    stage (the same stage again when it named no other).
    """
    if status == TaskStatus.SUCCESS:
        return Success()
    error = worker_error(text(data, "schedule_log"))
    if status == TaskStatus.FAILED:
        return Fail(error or "failed by the worker")
    if status == TaskStatus.PENDING:
        retries = integer(data, "crt_retry_num")
        if retries is not None and retries > current.crt_retry_num:
            return Retry(error)
        return NextStage(text(data, "task_stage") or current.task_stage)
    raise V1Error(
        INPUT_INVALID,
        f"status must be 1 (next stage or retry), 3 (success) or 4 (failed), got {status}",
        field="task_data.status",
    )
