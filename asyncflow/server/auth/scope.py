"""The caller of the current call, and the one check the servicer needs from auth:
may this worker touch this task type?

The guard (asyncflow.server.auth.guard) sets CALLER for each call it admits; a
WorkTasks stream's tasks inherit it. Role checks happen in the guard; only the
task type of a worker call is known later (in the request, or inside a task id),
so HoldTasks, SetTask, ExtendLease and the stream's subscribe, reports and
extensions call check_type/check_task. No guard (security off): no caller, no
limit.
"""

from __future__ import annotations

from contextvars import ContextVar

from asyncflow.core.ids import parse_task_id
from asyncflow.errors import InvalidArgument, TaskTypeNotAllowed
from asyncflow.server.auth.tokens import Caller

CALLER: ContextVar[Caller | None] = ContextVar("asyncflow_caller", default=None)


def check_type(task_type: str, field: str = "task_type") -> None:
    """Refuse a worker call on a type the caller's entry does not list."""
    caller = CALLER.get()
    if caller is None or caller.types is None or "admin" in caller.roles:
        return
    if task_type not in caller.types:
        raise TaskTypeNotAllowed(
            f"{caller.name} may not work on task type {task_type!r:.60}", field=field
        )


def check_task(task_id: str, field: str = "task_id") -> None:
    """check_type for the type a task id names."""
    if CALLER.get() is None:
        return
    try:
        task_type, _ = parse_task_id(task_id, field)
    except InvalidArgument:  # the core refuses it, changing nothing
        return
    check_type(task_type, field)
