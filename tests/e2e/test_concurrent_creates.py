"""Concurrent CreateTask calls through a real server share transactions (group
commit); each caller must still get exactly its own answer, and every task
acknowledged must be readable and holdable at once. The batching rules
themselves are pinned in tests/store/test_create_batching.py."""

from __future__ import annotations

import asyncio

import grpc
from rpc import counts, error_reason, get, hold, register

from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

CALLS = 64


async def test_concurrent_creates_each_get_their_own_answer(
    stub: pb_grpc.TaskServiceStub,
) -> None:
    await register(stub, schedule_limit=500)
    used = await stub.CreateTask(pb.CreateTaskRequest(task_type="lark", idempotency_key="used"))

    async def create(i: int) -> pb.CreateTaskResponse:
        if i == 7:  # a key already used: that task, created = false
            request = pb.CreateTaskRequest(task_type="lark", idempotency_key="used", context="x")
        elif i == 11:  # a type not registered: NOT_FOUND for this call alone
            request = pb.CreateTaskRequest(task_type="nope")
        else:
            request = pb.CreateTaskRequest(task_type="lark", context=f"call {i}")
        reply: pb.CreateTaskResponse = await stub.CreateTask(request)
        return reply

    results = await asyncio.gather(*(create(i) for i in range(CALLS)), return_exceptions=True)

    refused = results[11]
    assert isinstance(refused, grpc.aio.AioRpcError)
    assert error_reason(refused)[:2] == (grpc.StatusCode.NOT_FOUND, "TASK_TYPE_NOT_FOUND")
    again = results[7]
    assert isinstance(again, pb.CreateTaskResponse)
    assert not again.created
    assert again.task == used.task
    created = {}
    for i, reply in enumerate(results):
        if i in (7, 11):
            continue
        assert isinstance(reply, pb.CreateTaskResponse), reply
        assert reply.created
        assert reply.task.context == f"call {i}"  # its own task, not a neighbour's
        created[reply.task.task_id] = reply.task
    assert len(created) == CALLS - 2
    # Acknowledged means committed: readable at once, and held by the next hold.
    for task_id, task in created.items():
        assert await get(stub, task_id) == task
    held = {t.task_id for t in await hold(stub, limit=500)}
    assert held == set(created) | {used.task.task_id}
    assert (await counts(stub))[pb.TASK_STATUS_PROCESSING] == CALLS - 1
