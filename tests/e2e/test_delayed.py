"""Delayed tasks (CreateTask.run_at): never held before they are due, pushed when due."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import Running
from rpc import create, error_reason, get, hold, register
from streams import RawWorker

from asyncflow.clock import ManualClock
from asyncflow.core.policy import MAX_DELAY
from asyncflow.v1 import task_service_pb2 as pb


@pytest.fixture
async def raw(server: Running) -> AsyncIterator[RawWorker]:
    worker = RawWorker(server.stub)
    yield worker
    worker.cancel()


async def test_a_delayed_task_is_not_held_early_and_is_pushed_when_due(
    server: Running, raw: RawWorker, clock: ManualClock
) -> None:
    stub = server.stub
    # A fallback poll of an hour: only the wake-up at the due time can push it.
    await register(stub, schedule_interval_seconds=3600)
    await raw.subscribe("lark", window=1)  # an idle stream, waiting
    run_at = clock.now() + 60
    task = await create(stub, run_at=run_at, priority=500)
    assert (task.status, task.order_time) == (pb.TASK_STATUS_PENDING, run_at)

    clock.advance(59)  # one second early
    assert await hold(stub) == []
    assert raw.tasks == []
    assert (await get(stub, task.task_id)).status == pb.TASK_STATUS_PENDING

    clock.advance(1)  # due: the server's alarm wakes the stream
    await raw.until(tasks=1)
    (pushed,) = raw.tasks
    assert (pushed.task_id, pushed.status) == (task.task_id, pb.TASK_STATUS_PROCESSING)


async def test_due_tasks_keep_their_order(server: Running, clock: ManualClock) -> None:
    stub = server.stub
    await register(stub)
    now = clock.now()
    delayed = await create(stub, run_at=now + 10, priority=3600)
    past = await create(stub, run_at=now - 100)  # a time already passed: at once
    urgent = await create(stub, priority=60)
    plain = await create(stub)
    assert past.order_time == now  # not back-dated: run_at is no priority
    clock.advance(10)
    advanced = await create(stub, priority=5)
    last = await create(stub)
    held = await hold(stub, limit=10)
    # By order_time: urgent (now-60) < past = plain (now, creation order) < advanced
    # (now+10-5) < delayed (its run_at, now+10: no advance before its time) = last.
    assert [t.task_id for t in held] == [
        urgent.task_id, past.task_id, plain.task_id, advanced.task_id, delayed.task_id,
        last.task_id,
    ]  # fmt: skip


async def test_create_tasks_takes_run_at_per_item(server: Running, clock: ManualClock) -> None:
    stub = server.stub
    await register(stub)
    now = clock.now()
    reply = await stub.CreateTasks(
        pb.CreateTasksRequest(
            tasks=[
                pb.CreateTaskRequest(task_type="lark", run_at=now + 30),
                pb.CreateTaskRequest(task_type="lark"),
            ]
        )
    )
    assert [r.task.order_time for r in reply.results] == [now + 30, now]
    assert [t.task_id for t in await hold(stub, limit=10)] == [reply.results[1].task.task_id]


@pytest.mark.parametrize("ahead", [-1, MAX_DELAY + 1])
async def test_run_at_out_of_range_is_refused(
    server: Running, clock: ManualClock, ahead: int
) -> None:
    stub = server.stub
    await register(stub)
    run_at = -1 if ahead < 0 else clock.now() + ahead
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create(stub, run_at=run_at)
    assert error_reason(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT",
                                           "run_at")  # fmt: skip
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateTasks(pb.CreateTasksRequest(tasks=[
            pb.CreateTaskRequest(task_type="lark"),
            pb.CreateTaskRequest(task_type="lark", run_at=run_at),
        ]))  # fmt: skip
    assert error_reason(refused.value)[2] == "tasks[1].run_at"
    assert await hold(stub, limit=10) == []  # nothing was created
