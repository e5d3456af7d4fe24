"""The producer side of the Python SDK: create tasks and look at them.

    async with Client("localhost:50051") as client:       # asyncio code
        task = await client.create("lark", context='{"to": "ops"}', idempotency_key="ops-1")

    client = SyncClient("localhost:50051")                 # any other code
    task = client.create("lark", context='{"to": "ops"}', idempotency_key="ops-1")

Both have the same methods, arguments, return values and errors: each method is
defined once (asyncflow._sdk.calls) and run by an async or a blocking runner.
The address is `host:port`, a list `host1:port,host2:port`, or any gRPC target
(`dns:///name:port`); calls are spread over the replicas. Calls that are safe
to repeat are retried by gRPC when a replica cannot answer; a create without an
idempotency key never is. Every failure is an asyncflow error (InvalidArgument,
TaskNotFound, Unavailable, ...), never a raw gRPC one.
"""

from __future__ import annotations

from typing import ClassVar

from asyncflow._sdk import calls, operator
from asyncflow._sdk.channel import ChannelSettings
from asyncflow._sdk.methods import (
    AsyncListing,
    AsyncMethod,
    AsyncRunner,
    SyncListing,
    SyncMethod,
    SyncRunner,
)
from asyncflow._sdk.types import (
    CatchUp,
    RetryStrategy,
    ScheduleInfo,
    TaskInfo,
    TaskSpec,
    TaskStatus,
    TaskTemplate,
    TaskTypeConfig,
)
from asyncflow.errors import (
    Aborted,
    AlreadyExists,
    AsyncflowError,
    FailedPrecondition,
    InvalidArgument,
    LeaseLost,
    NotFound,
    PermissionDenied,
    RateLimited,
    ResourceExhausted,
    ScheduleAlreadyExists,
    ScheduleNotFound,
    TaskCancelled,
    TaskFinished,
    TaskNotFound,
    TaskNotProcessing,
    TaskNotRetryable,
    TaskTypeNotAllowed,
    TaskTypeNotFound,
    TooManyStreams,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "Aborted",
    "AlreadyExists",
    "AsyncflowError",
    "CatchUp",
    "ChannelSettings",
    "Client",
    "FailedPrecondition",
    "InvalidArgument",
    "LeaseLost",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ResourceExhausted",
    "RetryStrategy",
    "ScheduleAlreadyExists",
    "ScheduleInfo",
    "ScheduleNotFound",
    "SyncClient",
    "TaskCancelled",
    "TaskFinished",
    "TaskInfo",
    "TaskNotFound",
    "TaskNotProcessing",
    "TaskNotRetryable",
    "TaskSpec",
    "TaskStatus",
    "TaskTemplate",
    "TaskTypeConfig",
    "TaskTypeNotAllowed",
    "TaskTypeNotFound",
    "TooManyStreams",
    "Unauthenticated",
    "Unavailable",
]

DEFAULT_ADDRESS = "localhost:50051"


class _Producer:
    """What both clients are made of: where to connect, the deadline of a call, and
    a runner (async or blocking) for the calls of asyncflow._sdk.calls."""

    _runner_type: ClassVar[type[AsyncRunner] | type[SyncRunner]]

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout: float = 30.0,
        settings: ChannelSettings | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        """Seconds each call may take, retries and waiting for a replica included."""
        self.runner = self._runner_type(address, settings or ChannelSettings(), timeout)


class Client(_Producer):
    """An asyncio client; an async context manager. Channels open at the first call
    in each process and event loop (a client used before fork() works in the child)."""

    _runner_type = AsyncRunner
    runner: AsyncRunner

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.runner.close()

    register_type = AsyncMethod(calls.register_type)
    list_types = AsyncMethod(calls.list_types)
    create = AsyncMethod(calls.create)
    create_many = AsyncMethod(calls.create_many)
    get = AsyncMethod(calls.get)
    list = AsyncListing(calls.list_tasks)
    count = AsyncMethod(calls.count)
    ping = AsyncMethod(calls.ping)

    # Operator control (asyncflow._sdk.operator)
    cancel = AsyncMethod(operator.cancel)
    cancel_many = AsyncListing(operator.cancel_many)
    retry = AsyncMethod(operator.retry)
    retry_many = AsyncListing(operator.retry_many)
    pause_type = AsyncMethod(operator.pause_type)
    resume_type = AsyncMethod(operator.resume_type)
    create_schedule = AsyncMethod(operator.create_schedule)
    update_schedule = AsyncMethod(operator.update_schedule)
    list_schedules = AsyncMethod(operator.list_schedules)
    delete_schedule = AsyncMethod(operator.delete_schedule)
    pause_schedule = AsyncMethod(operator.pause_schedule)
    resume_schedule = AsyncMethod(operator.resume_schedule)


class SyncClient(_Producer):
    """A blocking client for code without an event loop (Django, Flask, scripts);
    a context manager. One instance may be shared by every thread, and keeps
    working in processes forked after it was used (gunicorn, uWSGI, Celery)."""

    _runner_type = SyncRunner
    runner: SyncRunner

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.runner.close()

    register_type = SyncMethod(calls.register_type)
    list_types = SyncMethod(calls.list_types)
    create = SyncMethod(calls.create)
    create_many = SyncMethod(calls.create_many)
    get = SyncMethod(calls.get)
    list = SyncListing(calls.list_tasks)
    count = SyncMethod(calls.count)
    ping = SyncMethod(calls.ping)

    # Operator control (asyncflow._sdk.operator)
    cancel = SyncMethod(operator.cancel)
    cancel_many = SyncListing(operator.cancel_many)
    retry = SyncMethod(operator.retry)
    retry_many = SyncListing(operator.retry_many)
    pause_type = SyncMethod(operator.pause_type)
    resume_type = SyncMethod(operator.resume_type)
    create_schedule = SyncMethod(operator.create_schedule)
    update_schedule = SyncMethod(operator.update_schedule)
    list_schedules = SyncMethod(operator.list_schedules)
    delete_schedule = SyncMethod(operator.delete_schedule)
    pause_schedule = SyncMethod(operator.pause_schedule)
    resume_schedule = SyncMethod(operator.resume_schedule)
