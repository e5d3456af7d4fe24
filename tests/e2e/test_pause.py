"""PauseTaskType / ResumeTaskType: no holds or pushes of a paused type, creates still
taken, resume wakes the waiting streams at once, and the flag survives a restart."""

from __future__ import annotations

import grpc
import pytest
from conftest import Running, StartServer
from rpc import SUCCESS, create, error_reason, get, hold, register, report
from streams import RawWorker

from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc


async def pause(stub: pb_grpc.TaskServiceStub, task_type: str = "lark") -> pb.TaskTypeConfig:
    return (await stub.PauseTaskType(pb.PauseTaskTypeRequest(task_type=task_type))).task_type


async def resume(stub: pb_grpc.TaskServiceStub, task_type: str = "lark") -> pb.TaskTypeConfig:
    return (await stub.ResumeTaskType(pb.ResumeTaskTypeRequest(task_type=task_type))).task_type


async def paused_types(stub: pb_grpc.TaskServiceStub) -> dict[str, bool]:
    reply = await stub.ListTaskTypes(pb.ListTaskTypesRequest())
    return {c.task_type: c.paused for c in reply.task_types}


async def test_pause_stops_holds_and_pushes_of_that_type_only(server: Running) -> None:
    stub = server.stub
    # An hour's fallback poll: a push can only come from a wake-up.
    await register(stub, schedule_interval_seconds=3600)
    await register(stub, "other", schedule_interval_seconds=3600)
    running = await create(stub)
    (held,) = await hold(stub)
    assert (await pause(stub)).paused
    assert await paused_types(stub) == {"lark": True, "other": False}

    raw = RawWorker(stub)
    try:
        await raw.subscribe("lark", "other", window=5)
        waiting = [await create(stub) for _ in range(3)]  # creates are still taken
        other = await create(stub, "other")
        await raw.until(tasks=1)
        assert [t.task_id for t in raw.tasks] == [other.task_id]  # the other type flows
        assert await hold(stub) == []
        # The task held before the pause finishes normally.
        assert (await report(stub, held, SUCCESS)).status == pb.TASK_STATUS_SUCCESS
        assert held.task_id == running.task_id
        for task in waiting:
            assert (await get(stub, task.task_id)).status == pb.TASK_STATUS_PENDING

        assert not (await resume(stub)).paused  # wakes the stream at once
        await raw.until(tasks=4)
        assert {t.task_id for t in raw.tasks[1:]} == {t.task_id for t in waiting}
    finally:
        raw.cancel()
    assert await paused_types(stub) == {"lark": False, "other": False}


async def test_pause_and_resume_are_idempotent_and_name_the_type(server: Running) -> None:
    stub = server.stub
    await register(stub)
    first, second = await pause(stub), await pause(stub)
    assert (first.paused, second.paused) == (True, True)
    assert (await register(stub, schedule_limit=7)).paused  # registering keeps the flag
    await resume(stub)
    assert not (await resume(stub)).paused
    for call in (pause, resume):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(stub, "ghost")
        assert error_reason(refused.value) == (grpc.StatusCode.NOT_FOUND, "TASK_TYPE_NOT_FOUND",
                                               "task_type")  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(stub, "Bad Type")
        assert error_reason(refused.value)[0] == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_paused_flag_survives_a_restart(
    start_server: StartServer, config: Config
) -> None:
    first = await start_server(config)
    await register(first.stub)
    await create(first.stub)
    await pause(first.stub)
    await first.server.stop(None)
    second = await start_server(config)
    assert await paused_types(second.stub) == {"lark": True}
    assert await hold(second.stub) == []
    await resume(second.stub)
    assert len(await hold(second.stub)) == 1


@pytest.mark.parametrize("backend", ["mysql"])
async def test_resume_wakes_streams_on_every_replica(
    start_server: StartServer, config: Config
) -> None:
    streaming, operating = await start_server(config), await start_server(config)
    await register(operating.stub, schedule_interval_seconds=3600)
    await pause(operating.stub)
    task = await create(operating.stub)
    raw = RawWorker(streaming.stub)
    try:
        await raw.subscribe("lark", window=1)
        assert await hold(operating.stub) == []
        await resume(operating.stub)  # on the other replica: through the relay
        await raw.until(tasks=1)
        assert raw.tasks[0].task_id == task.task_id
    finally:
        raw.cancel()
