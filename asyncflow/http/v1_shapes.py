"""The original flowsvr's wire shapes (reference §3.0): codes, binding, TaskData.

Everything here is shape, as gin and the Go structs had it: the outcome in a
`{"code", "msg", ...}` envelope under HTTP 200, `msg` derived from `code`,
snake_case fields, RFC 3339 times. docs/http-v1.md lists where asyncflow's
answers differ from the original's, and why.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from asyncflow.core.model import RetryStrategy, Task, TaskTypeConfig

OK = 0
INPUT_INVALID = 8020
SHOULD_BIND = 8021
GET_TASK_INFO = 8035
CREATE_TASK = 8037
GET_TASK_LIST = 8038
GET_TASK_POS = 8039
SET_TASK = 8041
GET_TASK_CFG = 8045
GET_TASK_COUNT = 8046
REGISTER_TASK = 8048

MESSAGES = {
    OK: "ok",
    INPUT_INVALID: "input invalid",
    SHOULD_BIND: "should bind failed",
    GET_TASK_INFO: "get task info failed",
    CREATE_TASK: "create task failed",
    GET_TASK_LIST: "get task list from db failed",
    GET_TASK_POS: "get task set pos from db failed",
    SET_TASK: "set task failed",
    GET_TASK_CFG: "get task cfg failed",
    GET_TASK_COUNT: "get task count from db failed",
    REGISTER_TASK: "register task insert record failed",
}

Body = dict[str, Any]


class V1Error(Exception):
    """A /v1 answer other than ok; `error` (an extra field) says what happened."""

    def __init__(self, code: int, message: str, *, reason: str = "", field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.error = {"reason": reason or MESSAGES[code].upper().replace(" ", "_"),
                      "field": field, "message": message}  # fmt: skip


def envelope(code: int = OK, **payload: Any) -> web.Response:
    """Always HTTP 200: the outcome is in the body, as the original's clients expect."""
    return web.json_response({"code": code, "msg": MESSAGES[code], **payload})


async def bind(request: web.Request) -> Body:
    """gin's ShouldBind: a GET reads the query string; a POST with a JSON content
    type reads the body; any other POST reads the query string and form."""
    if request.method == "GET":
        return dict(request.query)
    if request.content_type == "application/json":
        try:
            body = json.loads(await request.text() or "{}")
        except ValueError:
            raise V1Error(SHOULD_BIND, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise V1Error(SHOULD_BIND, "the body is not a JSON object")
        return body
    return {**request.query, **(await request.post())}


def text(body: Body, key: str) -> str:
    """A string field; absent or null reads as "" (Go's zero value)."""
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise V1Error(SHOULD_BIND, f"{key} must be a string", field=key)
    return value


def integer(body: Body, key: str) -> int | None:
    """An integer field (a JSON number, or digits in a query/form); None when absent or null."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, str):  # from the query string or a form
        try:
            return int(value)
        except ValueError:
            raise V1Error(SHOULD_BIND, f"{key} must be an integer", field=key) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise V1Error(SHOULD_BIND, f"{key} must be an integer", field=key)
    return value


def task_data_in(body: Body) -> Body:
    """The `task_data` object of create_task and set_task ({} when absent)."""
    data = body.get("task_data")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise V1Error(SHOULD_BIND, "task_data must be an object", field="task_data")
    return data


def rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def task_data(task: Task, *, with_lease: bool = False) -> Body:
    """A task as the original's TaskData; a hold's answer adds the lease that
    set_task must send back (`lease_token`), its deadline and attempt number."""
    data: Body = {
        "user_id": task.user_id,
        "task_id": task.task_id,
        "task_type": task.task_type,
        "task_stage": task.task_stage,
        "status": int(task.status),
        "priority": task.priority,
        "crt_retry_num": task.crt_retry_num,
        "max_retry_num": task.max_retry_num,
        "max_retry_interval": task.retry.max_interval,
        "schedule_log": task.schedule_log,
        "context": task.context,
        "order_time": task.order_time,
        "create_time": rfc3339(task.create_time),
        "modify_time": rfc3339(task.modify_time),
    }
    if with_lease:
        data |= {"lease_token": task.lease_token, "lease_deadline": rfc3339(task.lease_deadline),
                 "attempt": task.hold_count}  # fmt: skip
    return data


def schedule_cfg(config: TaskTypeConfig) -> Body:
    """A t_schedule_cfg row; retry_interval < 0 means the uniform strategy, as stored."""
    sign = -1 if config.retry.strategy is RetryStrategy.UNIFORM else 1
    return {
        "task_type": config.task_type,
        "schedule_limit": config.schedule_limit,
        "schedule_interval": config.schedule_interval,
        "max_processing_time": config.max_processing_time,
        "max_retry_num": config.max_retry_num,
        "retry_interval": sign * config.retry.interval,
        "max_retry_interval": config.retry.max_interval,
        "create_time": rfc3339(config.create_time),
        "modify_time": rfc3339(config.modify_time),
    }


def worker_error(schedule_log: str) -> str:
    """The error a Go worker put in its schedule log ({"LastData": {"ErrMsg": ...}})."""
    try:
        log = json.loads(schedule_log)
    except ValueError:
        return ""
    last = log.get("LastData") if isinstance(log, dict) else None
    message = last.get("ErrMsg") if isinstance(last, dict) else None
    return message if isinstance(message, str) else ""
