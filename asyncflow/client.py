"""The producer side of the Python SDK: create tasks and look at them.

    async with Client("localhost:50051") as client:
        await client.register_type("lark", max_retry_num=3)
        task = await client.create("lark", context='{"to": "ops"}')
        print((await client.get(task.task_id)).status)

Every failure is an asyncflow error (InvalidArgument, TaskNotFound, ...), never
a raw gRPC one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import grpc

from asyncflow._sdk.convert import CHANNEL_OPTIONS, config_from_pb, spec_to_pb, task_from_pb
from asyncflow._sdk.errors import call
from asyncflow._sdk.types import RetryStrategy, TaskInfo, TaskSpec, TaskStatus, TaskTypeConfig
from asyncflow.errors import (
    AsyncflowError,
    FailedPrecondition,
    InvalidArgument,
    LeaseLost,
    NotFound,
    ResourceExhausted,
    TaskNotFound,
    TaskNotProcessing,
    TaskTypeNotFound,
    Unavailable,
)
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

__all__ = [
    "AsyncflowError",
    "Client",
    "FailedPrecondition",
    "InvalidArgument",
    "LeaseLost",
    "NotFound",
    "ResourceExhausted",
    "RetryStrategy",
    "TaskInfo",
    "TaskNotFound",
    "TaskNotProcessing",
    "TaskSpec",
    "TaskStatus",
    "TaskTypeConfig",
    "TaskTypeNotFound",
    "Unavailable",
]

DEFAULT_ADDRESS = "localhost:50051"


class Client:
    """A connection to an asyncflow server; an async context manager."""

    def __init__(self, address: str = DEFAULT_ADDRESS, *, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.TaskServiceStub(self._channel)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def register_type(
        self,
        task_type: str,
        *,
        schedule_limit: int | None = None,
        schedule_interval: int | None = None,
        max_processing_time: int | None = None,
        max_retry_num: int | None = None,
        retry_strategy: RetryStrategy | None = None,
        retry_interval: int | None = None,
        max_retry_interval: int | None = None,
    ) -> TaskTypeConfig:
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
        reply = await call(lambda: self._stub.RegisterTaskType(request, timeout=self.timeout))
        return config_from_pb(reply.task_type)

    async def list_types(self) -> list[TaskTypeConfig]:
        reply = await call(
            lambda: self._stub.ListTaskTypes(pb.ListTaskTypesRequest(), timeout=self.timeout)
        )
        return [config_from_pb(c) for c in reply.task_types]

    async def create(
        self,
        task_type: str,
        *,
        context: str = "",
        stage: str = "",
        user_id: str = "",
        priority: int = 0,
        idempotency_key: str = "",
    ) -> TaskInfo:
        """Enqueue a task. With an idempotency_key, a repeated call returns the
        task the first call created."""
        spec = TaskSpec(task_type, context, stage, user_id, priority, idempotency_key)
        request = spec_to_pb(spec)
        reply = await call(lambda: self._stub.CreateTask(request, timeout=self.timeout))
        return task_from_pb(reply.task)

    async def create_many(self, tasks: Iterable[TaskSpec]) -> list[TaskInfo]:
        """Enqueue several tasks in one call: all are validated before any is created."""
        request = pb.CreateTasksRequest(tasks=[spec_to_pb(t) for t in tasks])
        reply = await call(lambda: self._stub.CreateTasks(request, timeout=self.timeout))
        return [task_from_pb(r.task) for r in reply.results]

    async def get(self, task_id: str) -> TaskInfo:
        request = pb.GetTaskRequest(task_id=task_id)
        reply = await call(lambda: self._stub.GetTask(request, timeout=self.timeout))
        return task_from_pb(reply.task)

    async def list(
        self,
        task_type: str,
        *,
        status: TaskStatus | None = None,
        stage: str = "",
        user_id: str = "",
        page_size: int = 100,
    ) -> AsyncIterator[TaskInfo]:
        """Every matching task of a type, fetched page by page."""
        token = ""
        while True:
            request = pb.ListTasksRequest(
                task_type=task_type,
                status=pb.TaskStatus.ValueType(int(status) if status else 0),
                task_stage=stage,
                user_id=user_id,
                page_size=page_size,
                page_token=token,
            )
            reply = await call(
                lambda request=request: self._stub.ListTasks(request, timeout=self.timeout)  # type: ignore[misc]
            )
            for task in reply.tasks:
                yield task_from_pb(task)
            token = reply.next_page_token
            if not token:
                return

    async def count(self, task_type: str) -> dict[TaskStatus, int]:
        request = pb.CountTasksRequest(task_type=task_type)
        reply = await call(lambda: self._stub.CountTasks(request, timeout=self.timeout))
        return {TaskStatus(c.status): c.count for c in reply.counts}

    async def ping(self) -> int:
        """The server's clock (Unix seconds)."""
        reply = await call(lambda: self._stub.Ping(pb.PingRequest(), timeout=self.timeout))
        return reply.server_time
