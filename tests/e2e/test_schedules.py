"""Cron schedules over gRPC: the six RPCs, their errors, and the cron governance loop."""

from __future__ import annotations

import grpc
import pytest
from conftest import Running, StartServer
from rpc import error_reason, register
from waiting import eventually

from asyncflow.clock import ManualClock
from asyncflow.config import Config
from asyncflow.core.governance import GovernanceSettings
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

TEMPLATE = pb.TaskTemplate(task_type="lark", task_stage="report", context='{"n": 1}', priority=3)


async def create_schedule(stub: pb_grpc.TaskServiceStub, **fields: object) -> pb.Schedule:
    request = pb.CreateScheduleRequest(name="nightly", cron="0 3 * * *", task=TEMPLATE)
    for name, value in fields.items():
        if isinstance(value, pb.TaskTemplate):
            request.task.CopyFrom(value)
        else:
            setattr(request, name, value)
    return (await stub.CreateSchedule(request)).schedule


async def refused(call: object) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call  # type: ignore[misc]
    return error_reason(error.value)


async def test_create_list_update_pause_resume_delete(server: Running, clock: ManualClock) -> None:
    stub = server.stub
    await register(stub)
    made = await create_schedule(stub, time_zone="Europe/Paris")
    assert (made.name, made.cron, made.time_zone) == ("nightly", "0 3 * * *", "Europe/Paris")
    assert (made.catch_up, made.catch_up_limit) == (pb.CATCH_UP_POLICY_LATEST, 10)
    assert made.task == TEMPLATE
    assert clock.now() < made.next_fire_time <= clock.now() + 86_400
    assert made.last_fire_time == 0

    listed = (await stub.ListSchedules(pb.ListSchedulesRequest())).schedules
    assert list(listed) == [made]

    update = pb.UpdateScheduleRequest(
        name="nightly", cron="*/5 * * * *", catch_up=pb.CATCH_UP_POLICY_ALL, catch_up_limit=50
    )
    updated = (await stub.UpdateSchedule(update)).schedule
    assert (updated.cron, updated.time_zone, updated.catch_up) == (
        "*/5 * * * *", "Europe/Paris", pb.CATCH_UP_POLICY_ALL)  # fmt: skip
    assert (updated.catch_up_limit, updated.task) == (50, TEMPLATE)
    assert updated.next_fire_time <= clock.now() + 300

    paused = (await stub.PauseSchedule(pb.PauseScheduleRequest(name="nightly"))).schedule
    assert paused.paused
    clock.advance(3600)
    resumed = (await stub.ResumeSchedule(pb.ResumeScheduleRequest(name="nightly"))).schedule
    assert not resumed.paused
    assert clock.now() < resumed.next_fire_time <= clock.now() + 300

    await stub.DeleteSchedule(pb.DeleteScheduleRequest(name="nightly"))
    assert list((await stub.ListSchedules(pb.ListSchedulesRequest())).schedules) == []


async def test_schedule_errors_name_the_field(server: Running) -> None:
    stub = server.stub
    await register(stub)
    await create_schedule(stub)
    assert await refused(create_schedule(stub)) == (
        grpc.StatusCode.ALREADY_EXISTS, "SCHEDULE_ALREADY_EXISTS", "name")  # fmt: skip
    invalid = grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"
    for fields, field in (
        ({"name": "Bad"}, "name"), ({"name": "b", "cron": "nope"}, "cron"),
        ({"name": "b", "time_zone": "Nowhere/Land"}, "time_zone"),
        ({"name": "b", "catch_up": 7}, "catch_up"),
        ({"name": "b", "catch_up_limit": 5000}, "catch_up_limit"),
        ({"name": "b", "task": pb.TaskTemplate(task_type="lark", priority=10**9)},
         "task.priority"),
    ):  # fmt: skip
        assert await refused(create_schedule(stub, **fields)) == (*invalid, field)
    assert await refused(create_schedule(stub, name="b", task=pb.TaskTemplate(task_type="ghost"))
                         ) == (grpc.StatusCode.NOT_FOUND, "TASK_TYPE_NOT_FOUND",
                               "task.task_type")  # fmt: skip
    missing = (grpc.StatusCode.NOT_FOUND, "SCHEDULE_NOT_FOUND", "name")
    assert await refused(stub.DeleteSchedule(pb.DeleteScheduleRequest(name="ghost"))) == missing
    assert await refused(stub.PauseSchedule(pb.PauseScheduleRequest(name="ghost"))) == missing
    assert await refused(stub.UpdateSchedule(pb.UpdateScheduleRequest(name="ghost"))) == missing
    names = [s.name for s in (await stub.ListSchedules(pb.ListSchedulesRequest())).schedules]
    assert names == ["nightly"]


async def test_the_cron_loop_creates_each_ticks_task(
    start_server: StartServer, config: Config, clock: ManualClock
) -> None:
    fast = GovernanceSettings(cron_interval=0.05, long_process_interval=60, split_interval=60,
                              move_interval=60)  # fmt: skip
    server = await start_server(config, governance=fast)
    stub = server.stub
    await register(stub)
    made = await create_schedule(stub, name="minutely", cron="* * * * *")
    first = made.next_fire_time
    clock.advance(first - clock.now())

    async def schedule() -> pb.Schedule:
        (found,) = (await stub.ListSchedules(pb.ListSchedulesRequest())).schedules
        return found

    async def fired() -> bool:
        return (await schedule()).last_fire_time == first

    await eventually(fired, what="the first tick fired")
    recorded = await schedule()
    assert recorded.next_fire_time == first + 60
    task = (await stub.GetTask(pb.GetTaskRequest(task_id=recorded.last_task_id))).task
    assert task.task_id == f"cron-minutely-{first}_lark_1"
    assert (task.task_stage, task.context, task.priority) == ("report", '{"n": 1}', 3)
    listed = await stub.ListTasks(pb.ListTasksRequest(task_type="lark"))
    assert [t.task_id for t in listed.tasks] == [task.task_id]  # once, however many passes
