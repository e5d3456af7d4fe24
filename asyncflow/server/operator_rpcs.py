"""The operator-control RPCs of TaskService: cancel, retry, pause and resume of
tasks and types, and cron schedules. Mixed into TaskServicer; like it, they hold
no data and no rules (errors are mapped by @grpc_errors)."""

from __future__ import annotations

from typing import Any

import grpc

from asyncflow.core.control import TaskControl
from asyncflow.core.model import CatchUp, Schedule, ScheduleSettings, TaskTemplate
from asyncflow.core.schedules import ScheduleCore
from asyncflow.errors import InvalidArgument
from asyncflow.server.convert import config_to_pb, status_from_pb, task_to_pb
from asyncflow.server.errors import grpc_errors
from asyncflow.v1 import task_service_pb2 as pb

Context = grpc.aio.ServicerContext[Any, Any]


class OperatorRpcs:
    _control: TaskControl
    _schedules: ScheduleCore

    # -- tasks and types ------------------------------------------------------------

    @grpc_errors
    async def CancelTask(
        self, request: pb.CancelTaskRequest, context: Context
    ) -> pb.CancelTaskResponse:
        task = await self._control.cancel_task(request.task_id, request.reason)
        return pb.CancelTaskResponse(task=task_to_pb(task))

    @grpc_errors
    async def CancelTasks(
        self, request: pb.CancelTasksRequest, context: Context
    ) -> pb.CancelTasksResponse:
        tasks, next_token = await self._control.cancel_tasks(
            request.task_type,
            status_from_pb(request.status),
            request.task_stage or None,
            request.page_size,
            request.page_token,
            request.reason,
        )
        return pb.CancelTasksResponse(
            tasks=[task_to_pb(t) for t in tasks], next_page_token=next_token
        )

    @grpc_errors
    async def RetryTask(
        self, request: pb.RetryTaskRequest, context: Context
    ) -> pb.RetryTaskResponse:
        stage = request.task_stage if request.HasField("task_stage") else None
        task = await self._control.retry_task(request.task_id, stage)
        return pb.RetryTaskResponse(task=task_to_pb(task))

    @grpc_errors
    async def RetryTasks(
        self, request: pb.RetryTasksRequest, context: Context
    ) -> pb.RetryTasksResponse:
        tasks, next_token = await self._control.retry_tasks(
            request.task_type,
            status_from_pb(request.status),
            request.task_stage or None,
            request.page_size,
            request.page_token,
            request.new_task_stage if request.HasField("new_task_stage") else None,
        )
        return pb.RetryTasksResponse(
            tasks=[task_to_pb(t) for t in tasks], next_page_token=next_token
        )

    @grpc_errors
    async def PauseTaskType(
        self, request: pb.PauseTaskTypeRequest, context: Context
    ) -> pb.PauseTaskTypeResponse:
        config = await self._control.pause_type(request.task_type)
        return pb.PauseTaskTypeResponse(task_type=config_to_pb(config))

    @grpc_errors
    async def ResumeTaskType(
        self, request: pb.ResumeTaskTypeRequest, context: Context
    ) -> pb.ResumeTaskTypeResponse:
        config = await self._control.resume_type(request.task_type)
        return pb.ResumeTaskTypeResponse(task_type=config_to_pb(config))

    # -- schedules --------------------------------------------------------------------

    @grpc_errors
    async def CreateSchedule(
        self, request: pb.CreateScheduleRequest, context: Context
    ) -> pb.CreateScheduleResponse:
        settings = ScheduleSettings(
            name=request.name,
            cron=request.cron,
            time_zone=request.time_zone or None,
            template=template_from_pb(request.task) if request.HasField("task") else None,
            catch_up=catch_up_from_pb(request.catch_up),
            catch_up_limit=request.catch_up_limit or None,
        )
        schedule = await self._schedules.create_schedule(settings)
        return pb.CreateScheduleResponse(schedule=schedule_to_pb(schedule))

    @grpc_errors
    async def UpdateSchedule(
        self, request: pb.UpdateScheduleRequest, context: Context
    ) -> pb.UpdateScheduleResponse:
        settings = ScheduleSettings(
            name=request.name,
            cron=request.cron if request.HasField("cron") else None,
            time_zone=request.time_zone if request.HasField("time_zone") else None,
            template=template_from_pb(request.task) if request.HasField("task") else None,
            catch_up=catch_up_from_pb(request.catch_up),
            catch_up_limit=request.catch_up_limit if request.HasField("catch_up_limit") else None,
        )
        schedule = await self._schedules.update_schedule(settings)
        return pb.UpdateScheduleResponse(schedule=schedule_to_pb(schedule))

    @grpc_errors
    async def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: Context
    ) -> pb.ListSchedulesResponse:
        schedules = await self._schedules.list_schedules()
        return pb.ListSchedulesResponse(schedules=[schedule_to_pb(s) for s in schedules])

    @grpc_errors
    async def DeleteSchedule(
        self, request: pb.DeleteScheduleRequest, context: Context
    ) -> pb.DeleteScheduleResponse:
        await self._schedules.delete_schedule(request.name)
        return pb.DeleteScheduleResponse()

    @grpc_errors
    async def PauseSchedule(
        self, request: pb.PauseScheduleRequest, context: Context
    ) -> pb.PauseScheduleResponse:
        schedule = await self._schedules.pause_schedule(request.name)
        return pb.PauseScheduleResponse(schedule=schedule_to_pb(schedule))

    @grpc_errors
    async def ResumeSchedule(
        self, request: pb.ResumeScheduleRequest, context: Context
    ) -> pb.ResumeScheduleResponse:
        schedule = await self._schedules.resume_schedule(request.name)
        return pb.ResumeScheduleResponse(schedule=schedule_to_pb(schedule))


def template_from_pb(template: pb.TaskTemplate) -> TaskTemplate:
    return TaskTemplate(
        task_type=template.task_type,
        task_stage=template.task_stage,
        context=template.context,
        priority=template.priority,
    )


def catch_up_from_pb(value: int) -> CatchUp | None:
    """UNSPECIFIED (0) means the default (create) or the current policy (update)."""
    if value == pb.CATCH_UP_POLICY_UNSPECIFIED:
        return None
    try:
        return CatchUp(value)
    except ValueError:
        raise InvalidArgument(f"catch_up {value} is not a catch-up policy",
                              field="catch_up") from None  # fmt: skip


def schedule_to_pb(schedule: Schedule) -> pb.Schedule:
    template = schedule.template
    return pb.Schedule(
        name=schedule.name,
        cron=schedule.cron,
        time_zone=schedule.time_zone,
        task=pb.TaskTemplate(
            task_type=template.task_type,
            task_stage=template.task_stage,
            context=template.context,
            priority=template.priority,
        ),
        catch_up=pb.CatchUpPolicy.ValueType(int(schedule.catch_up)),
        catch_up_limit=schedule.catch_up_limit,
        paused=schedule.paused,
        last_fire_time=schedule.last_fire_time,
        next_fire_time=schedule.next_fire_time,
        last_task_id=schedule.last_task_id,
        create_time=schedule.create_time,
        modify_time=schedule.modify_time,
    )
