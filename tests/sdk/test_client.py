"""The producer SDK: typed errors from statuses, and every call through a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

import pytest
from conftest import Running

import asyncflow.client
import asyncflow.worker
from asyncflow._sdk.errors import call
from asyncflow.client import (
    Client,
    InvalidArgument,
    LeaseLost,
    RetryStrategy,
    TaskNotFound,
    TaskSpec,
    TaskStatus,
    TaskTypeNotFound,
)
from asyncflow.errors import TaskNotProcessing
from asyncflow.v1 import task_service_pb2 as pb


@pytest.fixture
async def client(server: Running) -> AsyncIterator[Client]:
    async with Client(server.address) as connected:
        yield connected


def test_public_surface_is_pinned() -> None:
    assert sorted(asyncflow.client.__all__) == [
        "AsyncflowError", "Client", "FailedPrecondition", "InvalidArgument", "LeaseLost",
        "NotFound", "ResourceExhausted", "RetryStrategy", "TaskInfo", "TaskNotFound",
        "TaskNotProcessing", "TaskSpec", "TaskStatus", "TaskTypeConfig", "TaskTypeNotFound",
        "Unavailable",
    ]  # fmt: skip
    assert sorted(asyncflow.worker.__all__) == [
        "Done", "Handler", "Job", "NonRetryable", "RetryLater", "RunNext", "Worker",
    ]  # fmt: skip
    for module in (asyncflow.client, asyncflow.worker):
        assert all(hasattr(module, name) for name in module.__all__)


async def test_register_create_get_list_count(client: Client) -> None:
    config = await client.register_type(
        "lark", max_retry_num=2, retry_strategy=RetryStrategy.UNIFORM, retry_interval=3
    )
    assert (config.max_retry_num, config.retry_strategy, config.retry_interval) == (
        2,
        RetryStrategy.UNIFORM,
        3,
    )
    assert [t.task_type for t in await client.list_types()] == ["lark"]
    first = await client.create("lark", context="c1", stage="s", user_id="u", priority=5)
    assert (first.status, first.stage, first.priority, first.max_retries) == (
        TaskStatus.PENDING,
        "s",
        5,
        2,
    )
    again = await client.create("lark", idempotency_key="k")
    assert (await client.create("lark", idempotency_key="k")).task_id == again.task_id
    many = await client.create_many([TaskSpec("lark", context=str(i)) for i in range(5)])
    assert [t.context for t in many] == [str(i) for i in range(5)]
    assert await client.get(first.task_id) == first
    listed = [t.task_id async for t in client.list("lark", page_size=2)]
    assert listed == [first.task_id, again.task_id, *(t.task_id for t in many)]
    assert [t.task_id async for t in client.list("lark", user_id="u")] == [first.task_id]
    assert (await client.count("lark"))[TaskStatus.PENDING] == 7
    assert await client.ping() > 0


async def test_statuses_become_typed_errors(client: Client, server: Running) -> None:
    with pytest.raises(TaskTypeNotFound) as missing_type:
        await client.create("ghost")
    assert missing_type.value.field == "task_type"
    with pytest.raises(InvalidArgument) as bad:
        await client.create("Bad Type")
    assert bad.value.field == "task_type"
    await client.register_type("lark")
    with pytest.raises(InvalidArgument) as too_early:
        await client.create("lark", priority=31_104_001)
    assert too_early.value.field == "priority"
    with pytest.raises(TaskNotFound):
        await client.get("x_lark_1")
    task = await client.create("lark")
    stub = server.stub
    (held,) = (await stub.HoldTasks(pb.HoldTasksRequest(task_type="lark"))).tasks

    def report(token: str) -> Awaitable[pb.SetTaskResponse]:
        request = pb.SetTaskRequest(task_id=task.task_id, lease_token=token)
        request.success.SetInParent()
        return stub.SetTask(request)

    with pytest.raises(LeaseLost) as forged:
        await call(lambda: report("forged"))
    assert forged.value.field == "lease_token"
    await call(lambda: report(held.lease.token))
    with pytest.raises(TaskNotProcessing):
        await call(lambda: report(held.lease.token))
