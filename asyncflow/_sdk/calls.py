"""The producer's calls, each defined once: its arguments, its request, its reply.

Client and SyncClient are two tables of the same builders (asyncflow._sdk.methods
runs them): a builder takes the method's arguments and returns a Call, i.e.
which RPC to make with which request, how to turn the reply into the SDK's
values, and whether the call is safe to repeat (which decides the channel it
goes on, and so whether gRPC retries it; see asyncflow._sdk.channel).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from asyncflow._sdk.channel import Route
from asyncflow._sdk.convert import config_from_pb, fill_request, spec_to_pb, task_from_pb
from asyncflow._sdk.types import RetryStrategy, TaskInfo, TaskSpec, TaskStatus, TaskTypeConfig
from asyncflow.v1 import task_service_pb2 as pb

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One unary RPC of TaskService."""

    method: str
    """The RPC's name, as on the generated stub."""
    request: Message
    convert: Callable[[Any], T]
    """The reply message -> what the client method returns."""
    route: Route = Route.REPEATABLE


Page = tuple[list[T], str]
"""One page of items and the token of the next page ("" after the last)."""


@dataclass(frozen=True)
class Pages(Generic[T]):
    """A listing fetched page by page: `page(token)` is the call for one page."""

    page: Callable[[str], Call[Page[T]]]


def register_type(
    task_type: str,
    *,
    schedule_limit: int | None = None,
    schedule_interval: int | None = None,
    max_processing_time: int | None = None,
    max_retry_num: int | None = None,
    retry_strategy: RetryStrategy | None = None,
    retry_interval: int | None = None,
    max_retry_interval: int | None = None,
) -> Call[TaskTypeConfig]:
    """Create or update a type; settings left None keep their value (or default)."""
    request = pb.RegisterTaskTypeRequest(task_type=task_type)
    for name, value in (
        ("schedule_limit", schedule_limit),
        ("schedule_interval_seconds", schedule_interval),
        ("max_processing_time_seconds", max_processing_time),
        ("max_retry_num", max_retry_num),
        ("retry_interval_seconds", retry_interval),
        ("max_retry_interval_seconds", max_retry_interval),
    ):
        if value is not None:
            setattr(request, name, value)
    if retry_strategy is not None:
        request.retry_strategy = pb.RetryStrategy.ValueType(retry_strategy)
    return Call("RegisterTaskType", request, lambda reply: config_from_pb(reply.task_type))


def list_types() -> Call[list[TaskTypeConfig]]:
    """Every registered task type."""
    return Call(
        "ListTaskTypes",
        pb.ListTaskTypesRequest(),
        lambda reply: [config_from_pb(c) for c in reply.task_types],
    )


def create(
    task_type: str,
    *,
    context: str = "",
    stage: str = "",
    user_id: str = "",
    priority: int = 0,
    idempotency_key: str = "",
    run_at: int = 0,
) -> Call[TaskInfo]:
    """Enqueue a task. With an idempotency_key, a repeated call returns the task the
    first call created, so the call is retried when a replica cannot answer;
    without one it is never repeated (a repeat could create a second task). With
    run_at (Unix seconds), the task is not run before then."""
    spec = TaskSpec(task_type, context, stage, user_id, priority, idempotency_key, run_at)
    return Call(
        "CreateTask",
        spec_to_pb(spec),
        lambda reply: task_from_pb(reply.task),
        Route.REPEATABLE if idempotency_key else Route.ONCE,
    )


def create_many(tasks: Iterable[TaskSpec]) -> Call[list[TaskInfo]]:
    """Enqueue several tasks in one call: all are validated before any is created.
    Retried like create() when every task has an idempotency key."""
    specs = list(tasks)
    request = pb.CreateTasksRequest()
    add = request.tasks.add
    for spec in specs:
        fill_request(add(), spec)
    return Call(
        "CreateTasks",
        request,
        lambda reply: [task_from_pb(r.task) for r in reply.results],
        Route.REPEATABLE if all(t.idempotency_key for t in specs) else Route.ONCE,
    )


def get(task_id: str) -> Call[TaskInfo]:
    """A task as it is now."""
    return Call("GetTask", pb.GetTaskRequest(task_id=task_id), lambda r: task_from_pb(r.task))


def list_tasks(
    task_type: str,
    *,
    status: TaskStatus | None = None,
    stage: str = "",
    user_id: str = "",
    page_size: int = 100,
) -> Pages[TaskInfo]:
    """Every matching task of a type, fetched page by page."""

    def page(token: str) -> Call[Page[TaskInfo]]:
        request = pb.ListTasksRequest(
            task_type=task_type,
            status=pb.TaskStatus.ValueType(int(status) if status else 0),
            task_stage=stage,
            user_id=user_id,
            page_size=page_size,
            page_token=token,
        )
        return Call(
            "ListTasks",
            request,
            lambda reply: ([task_from_pb(t) for t in reply.tasks], reply.next_page_token),
        )

    return Pages(page)


def count(task_type: str) -> Call[dict[TaskStatus, int]]:
    """The number of tasks of a type in each status (every status present)."""
    return Call(
        "CountTasks",
        pb.CountTasksRequest(task_type=task_type),
        lambda reply: {TaskStatus(c.status): c.count for c in reply.counts},
    )


def ping() -> Call[int]:
    """The server's clock (Unix seconds)."""
    return Call("Ping", pb.PingRequest(), lambda reply: reply.server_time)
