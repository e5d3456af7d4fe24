"""The operator methods of Client: cancel, retry, pause and resume tasks and types,
and cron schedules. Every failure is an asyncflow error (TaskFinished,
TaskNotRetryable, ScheduleNotFound, ...), as for the producer's methods."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from asyncflow._sdk.convert import config_from_pb, schedule_from_pb, task_from_pb, template_to_pb
from asyncflow._sdk.errors import call
from asyncflow._sdk.types import CatchUp, ScheduleInfo, TaskInfo, TaskStatus, TaskTemplate
from asyncflow._sdk.types import TaskTypeConfig as TypeConfig
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc


class OperatorMethods:
    _stub: pb_grpc.TaskServiceAsyncStub
    timeout: float

    async def _call(self, method: str, request: Any) -> Any:
        rpc: Callable[..., Awaitable[Any]] = getattr(self._stub, method)
        return await call(lambda: rpc(request, timeout=self.timeout))

    async def _pages(self, method: str, request: Any) -> AsyncIterator[TaskInfo]:
        while True:
            reply = await self._call(method, request)
            for task in reply.tasks:
                yield task_from_pb(task)
            if not reply.next_page_token:
                return
            request.page_token = reply.next_page_token

    # -- tasks --------------------------------------------------------------------

    async def cancel(self, task_id: str, *, reason: str = "") -> TaskInfo:
        """Cancel a PENDING or PROCESSING task (its worker is told to stop); a
        CANCELLED one is returned as it is. Raises TaskFinished for a SUCCESS or
        FAILED task."""
        reply = await self._call("CancelTask", pb.CancelTaskRequest(task_id=task_id,
                                                                    reason=reason))  # fmt: skip
        return task_from_pb(reply.task)

    def cancel_many(
        self,
        task_type: str,
        *,
        status: TaskStatus | None = None,
        stage: str = "",
        reason: str = "",
        page_size: int = 100,
    ) -> AsyncIterator[TaskInfo]:
        """Cancel the matching tasks of a type (PENDING and/or PROCESSING), a page of
        `page_size` at a time; yields each task cancelled. Stop iterating to stop."""
        request = pb.CancelTasksRequest(task_type=task_type, status=_status(status),
                                        task_stage=stage, reason=reason,
                                        page_size=page_size)  # fmt: skip
        return self._pages("CancelTasks", request)

    async def retry(self, task_id: str, *, stage: str | None = None) -> TaskInfo:
        """Run a FAILED or CANCELLED task again (at `stage`, if given), with a fresh
        retry budget. Raises TaskNotRetryable for a task in another status."""
        request = pb.RetryTaskRequest(task_id=task_id)
        if stage is not None:
            request.task_stage = stage
        return task_from_pb((await self._call("RetryTask", request)).task)

    def retry_many(
        self,
        task_type: str,
        *,
        status: TaskStatus | None = None,
        stage: str = "",
        new_stage: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[TaskInfo]:
        """Retry the matching FAILED and/or CANCELLED tasks of a type, a page at a
        time (at `new_stage`, if given); yields each task retried."""
        request = pb.RetryTasksRequest(task_type=task_type, status=_status(status),
                                       task_stage=stage, page_size=page_size)  # fmt: skip
        if new_stage is not None:
            request.new_task_stage = new_stage
        return self._pages("RetryTasks", request)

    # -- task types -----------------------------------------------------------------

    async def pause_type(self, task_type: str) -> TypeConfig:
        """Hold and push nothing of the type until resume_type (creates go on)."""
        reply = await self._call("PauseTaskType", pb.PauseTaskTypeRequest(task_type=task_type))
        return config_from_pb(reply.task_type)

    async def resume_type(self, task_type: str) -> TypeConfig:
        reply = await self._call("ResumeTaskType", pb.ResumeTaskTypeRequest(task_type=task_type))
        return config_from_pb(reply.task_type)

    # -- schedules --------------------------------------------------------------------

    async def create_schedule(
        self,
        name: str,
        cron: str,
        task: TaskTemplate,
        *,
        time_zone: str = "",
        catch_up: CatchUp | None = None,
        catch_up_limit: int | None = None,
    ) -> ScheduleInfo:
        """A schedule creating one `task` per tick of `cron` in `time_zone` (UTC by
        default). Raises ScheduleAlreadyExists when the name is taken."""
        request = pb.CreateScheduleRequest(
            name=name, cron=cron, time_zone=time_zone, task=template_to_pb(task),
            catch_up=pb.CatchUpPolicy.ValueType(catch_up or 0),
            catch_up_limit=catch_up_limit or 0,
        )  # fmt: skip
        return schedule_from_pb((await self._call("CreateSchedule", request)).schedule)

    async def update_schedule(
        self,
        name: str,
        *,
        cron: str | None = None,
        time_zone: str | None = None,
        task: TaskTemplate | None = None,
        catch_up: CatchUp | None = None,
        catch_up_limit: int | None = None,
    ) -> ScheduleInfo:
        """Change what is given; the rest is kept."""
        policy = pb.CatchUpPolicy.ValueType(catch_up or 0)
        request = pb.UpdateScheduleRequest(name=name, catch_up=policy)
        if cron is not None:
            request.cron = cron
        if time_zone is not None:
            request.time_zone = time_zone
        if task is not None:
            request.task.CopyFrom(template_to_pb(task))
        if catch_up_limit is not None:
            request.catch_up_limit = catch_up_limit
        return schedule_from_pb((await self._call("UpdateSchedule", request)).schedule)

    async def list_schedules(self) -> list[ScheduleInfo]:
        reply = await self._call("ListSchedules", pb.ListSchedulesRequest())
        return [schedule_from_pb(s) for s in reply.schedules]

    async def delete_schedule(self, name: str) -> None:
        await self._call("DeleteSchedule", pb.DeleteScheduleRequest(name=name))

    async def pause_schedule(self, name: str) -> ScheduleInfo:
        reply = await self._call("PauseSchedule", pb.PauseScheduleRequest(name=name))
        return schedule_from_pb(reply.schedule)

    async def resume_schedule(self, name: str) -> ScheduleInfo:
        """Fire again from the first tick after now."""
        reply = await self._call("ResumeSchedule", pb.ResumeScheduleRequest(name=name))
        return schedule_from_pb(reply.schedule)


def _status(status: TaskStatus | None) -> pb.TaskStatus.ValueType:
    return pb.TaskStatus.ValueType(int(status) if status else 0)
