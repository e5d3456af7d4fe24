"""The producer SDK, Client and SyncClient alike: every call through a real server,
typed errors from statuses, one SyncClient shared by threads and by forked processes."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import AsyncIterator, Awaitable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import Running
from producers import KINDS, Producer, close, open_client

import asyncflow.client
import asyncflow.worker
from asyncflow._sdk.errors import call
from asyncflow._sdk.methods import AsyncListing, AsyncMethod, SyncListing, SyncMethod
from asyncflow.client import (
    Client,
    InvalidArgument,
    LeaseLost,
    RetryStrategy,
    SyncClient,
    TaskNotFound,
    TaskSpec,
    TaskStatus,
    TaskTypeNotFound,
)
from asyncflow.errors import TaskNotProcessing
from asyncflow.v1 import task_service_pb2 as pb

FORKING = Path(__file__).with_name("forking.py")


@pytest.fixture(params=KINDS)
async def client(request: pytest.FixtureRequest, server: Running) -> AsyncIterator[Producer]:
    opened = open_client(request.param, server.address)
    yield Producer(opened)
    await close(opened)


def test_public_surface_is_pinned() -> None:
    assert sorted(asyncflow.client.__all__) == [
        "Aborted", "AlreadyExists", "AsyncflowError", "CatchUp", "ChannelSettings", "Client",
        "FailedPrecondition", "InvalidArgument", "LeaseLost", "NotFound", "PermissionDenied",
        "RateLimited", "ResourceExhausted", "RetryStrategy", "ScheduleAlreadyExists",
        "ScheduleInfo", "ScheduleNotFound", "SyncClient", "TaskCancelled", "TaskFinished",
        "TaskInfo", "TaskNotFound", "TaskNotProcessing", "TaskNotRetryable", "TaskSpec",
        "TaskStatus", "TaskTemplate", "TaskTypeConfig", "TaskTypeNotAllowed", "TaskTypeNotFound",
        "TooManyStreams", "Unauthenticated", "Unavailable",
    ]  # fmt: skip
    assert sorted(asyncflow.worker.__all__) == [
        "ChannelSettings", "Done", "Handler", "Job", "NonRetryable", "RetryLater", "RunNext",
        "Worker",
    ]  # fmt: skip
    for module in (asyncflow.client, asyncflow.worker):
        assert all(hasattr(module, name) for name in module.__all__)


def test_both_clients_run_the_same_call_definitions() -> None:
    """One builder per method, shared: the sync client is no copy of the async one."""

    def methods(cls: type) -> dict[str, object]:
        kinds = (AsyncMethod, SyncMethod, AsyncListing, SyncListing)
        return {name: m.build for name, m in vars(cls).items() if isinstance(m, kinds)}

    assert methods(SyncClient) == methods(Client)
    assert sorted(methods(Client)) == [
        "cancel", "cancel_many", "count", "create", "create_many", "create_schedule",
        "delete_schedule", "get", "list", "list_schedules", "list_types", "pause_schedule",
        "pause_type", "ping", "register_type", "resume_schedule", "resume_type", "retry",
        "retry_many", "update_schedule",
    ]  # fmt: skip
    public = {name for name in vars(Client) if not name.startswith("_")}
    assert public == {*methods(Client), "close"}


async def test_register_create_get_list_count(client: Producer) -> None:
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
    keyed = [TaskSpec("lark", idempotency_key=f"m{i}") for i in range(2)]
    assert await client.create_many(keyed) == await client.create_many(keyed)
    assert await client.get(first.task_id) == first
    listed = [t.task_id for t in await client.list("lark", page_size=2)]
    assert listed[:7] == [first.task_id, again.task_id, *(t.task_id for t in many)]
    assert [t.task_id for t in await client.list("lark", user_id="u")] == [first.task_id]
    assert (await client.count("lark"))[TaskStatus.PENDING] == 9
    assert await client.ping() > 0


async def test_statuses_become_typed_errors(client: Producer, server: Running) -> None:
    with pytest.raises(TaskTypeNotFound) as missing_type:
        await client.create("ghost")
    assert missing_type.value.field == "task_type"
    with pytest.raises(InvalidArgument) as bad:
        await client.create("Bad Type", idempotency_key="k")
    assert bad.value.field == "task_type"
    await client.register_type("lark")
    with pytest.raises(InvalidArgument) as too_early:
        await client.create("lark", priority=31_104_001)
    assert too_early.value.field == "priority"
    with pytest.raises(TaskNotFound):
        await client.get("x_lark_1")
    with pytest.raises(InvalidArgument) as bad_item:
        await client.create_many([TaskSpec("lark"), TaskSpec("lark", priority=31_104_001)])
    assert bad_item.value.field == "tasks[1].priority"
    with pytest.raises(TaskTypeNotFound):
        await client.list("ghost")
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


async def test_a_closed_client_refuses_calls(client: Producer) -> None:
    await client.close()
    with pytest.raises(RuntimeError, match="closed"):
        await client.ping()


async def test_one_sync_client_shared_by_16_threads(server: Running) -> None:
    """Every thread creates, reads and lists at the same moment, on one SyncClient.
    (All of it in threads: the server runs on this test's event loop.)"""
    shared = SyncClient(server.address)
    start = threading.Barrier(16)

    def produce(thread: int) -> list[str]:
        start.wait(timeout=30)
        created = [shared.create("lark", idempotency_key=f"t{thread}-{i}") for i in range(10)]
        created += shared.create_many([TaskSpec("lark", user_id=f"u{thread}")] * 5)
        assert [shared.get(t.task_id) for t in created] == created
        mine = {t.task_id for t in shared.list("lark", user_id=f"u{thread}")}
        assert mine == {t.task_id for t in created[10:]}
        return [t.task_id for t in created]

    def run_all() -> tuple[list[str], dict[TaskStatus, int]]:
        shared.register_type("lark")
        with ThreadPoolExecutor(max_workers=16) as pool:
            created = [task_id for ids in pool.map(produce, range(16)) for task_id in ids]
        return created, shared.count("lark")

    try:
        created, counts = await asyncio.to_thread(run_all)
    finally:
        shared.close()
    assert len(set(created)) == len(created) == 16 * 15
    assert counts[TaskStatus.PENDING] == 16 * 15


async def test_a_forked_child_uses_the_client_its_parent_used(server: Running) -> None:
    """tests/sdk/forking.py: a process uses a SyncClient and a Client, forks (as
    gunicorn, uWSGI or Celery do), and both it and its child keep using them."""
    async with Client(server.address) as client:
        await client.register_type("lark")
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(FORKING), server.address,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, err.decode()
        report = json.loads(out)
        assert report["child"]["exitcode"] == 0, report
        parent, child = report["parent"], report["child"]
        assert child["pid"] != parent["pid"]
        for who in (parent, child):
            for kind in KINDS:
                for task_id in who[kind]:
                    assert (await client.get(task_id)).task_id == task_id
        created = [*parent["sync"], *parent["async"], *child["sync"], *child["async"]]
        assert len(set(created)) == len(created) == 12
        assert (await client.count("lark"))[TaskStatus.PENDING] == 12
