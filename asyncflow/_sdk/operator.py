"""The operator's calls (cancel, retry, pause and resume tasks and types; cron
schedules), each defined once like asyncflow._sdk.calls: Client and SyncClient
run the same builders. Calls that are safe to repeat (their repeat changes
nothing more and answers the same) go on the REPEATABLE route; a retry, a
schedule's create and delete never are repeated (their repeat would be refused)."""

from __future__ import annotations

from asyncflow._sdk.calls import Call, Page, Pages
from asyncflow._sdk.channel import Route
from asyncflow._sdk.convert import config_from_pb, schedule_from_pb, task_from_pb, template_to_pb
from asyncflow._sdk.types import CatchUp, ScheduleInfo, TaskInfo, TaskStatus, TaskTemplate
from asyncflow._sdk.types import TaskTypeConfig as TypeConfig
from asyncflow.v1 import task_service_pb2 as pb


def _status(status: TaskStatus | None) -> pb.TaskStatus.ValueType:
    return pb.TaskStatus.ValueType(int(status) if status else 0)


def _tasks(reply: pb.CancelTasksResponse | pb.RetryTasksResponse) -> Page[TaskInfo]:
    return [task_from_pb(t) for t in reply.tasks], reply.next_page_token


# -- tasks ---------------------------------------------------------------------------


def cancel(task_id: str, *, reason: str = "") -> Call[TaskInfo]:
    """Cancel a PENDING or PROCESSING task (its worker is told to stop); a CANCELLED
    one is returned as it is. Raises TaskFinished for a SUCCESS or FAILED task."""
    request = pb.CancelTaskRequest(task_id=task_id, reason=reason)
    return Call("CancelTask", request, lambda reply: task_from_pb(reply.task))


def cancel_many(
    task_type: str,
    *,
    status: TaskStatus | None = None,
    stage: str = "",
    reason: str = "",
    page_size: int = 100,
) -> Pages[TaskInfo]:
    """Cancel the matching tasks of a type (PENDING and/or PROCESSING), a page of
    `page_size` at a time; yields each task cancelled. Stop iterating to stop."""

    def page(token: str) -> Call[Page[TaskInfo]]:
        request = pb.CancelTasksRequest(task_type=task_type, status=_status(status),
                                        task_stage=stage, reason=reason, page_size=page_size,
                                        page_token=token)  # fmt: skip
        return Call("CancelTasks", request, _tasks)

    return Pages(page)


def retry(task_id: str, *, stage: str | None = None) -> Call[TaskInfo]:
    """Run a FAILED or CANCELLED task again (at `stage`, if given), with a fresh retry
    budget. Raises TaskNotRetryable for a task in another status."""
    request = pb.RetryTaskRequest(task_id=task_id)
    if stage is not None:
        request.task_stage = stage
    return Call("RetryTask", request, lambda reply: task_from_pb(reply.task), Route.ONCE)


def retry_many(
    task_type: str,
    *,
    status: TaskStatus | None = None,
    stage: str = "",
    new_stage: str | None = None,
    page_size: int = 100,
) -> Pages[TaskInfo]:
    """Retry the matching FAILED and/or CANCELLED tasks of a type, a page at a time
    (at `new_stage`, if given); yields each task retried."""

    def page(token: str) -> Call[Page[TaskInfo]]:
        request = pb.RetryTasksRequest(task_type=task_type, status=_status(status),
                                       task_stage=stage, page_size=page_size,
                                       page_token=token)  # fmt: skip
        if new_stage is not None:
            request.new_task_stage = new_stage
        return Call("RetryTasks", request, _tasks, Route.ONCE)

    return Pages(page)


# -- task types ------------------------------------------------------------------------


def pause_type(task_type: str) -> Call[TypeConfig]:
    """Hold and push nothing of the type until resume_type (creates go on)."""
    request = pb.PauseTaskTypeRequest(task_type=task_type)
    return Call("PauseTaskType", request, lambda reply: config_from_pb(reply.task_type))


def resume_type(task_type: str) -> Call[TypeConfig]:
    """Hold and push the type's tasks again; waiting workers get them at once."""
    request = pb.ResumeTaskTypeRequest(task_type=task_type)
    return Call("ResumeTaskType", request, lambda reply: config_from_pb(reply.task_type))


# -- schedules ----------------------------------------------------------------------------


def create_schedule(
    name: str,
    cron: str,
    task: TaskTemplate,
    *,
    time_zone: str = "",
    catch_up: CatchUp | None = None,
    catch_up_limit: int | None = None,
) -> Call[ScheduleInfo]:
    """A schedule creating one `task` per tick of `cron` in `time_zone` (UTC by
    default). Raises ScheduleAlreadyExists when the name is taken."""
    request = pb.CreateScheduleRequest(
        name=name, cron=cron, time_zone=time_zone, task=template_to_pb(task),
        catch_up=pb.CatchUpPolicy.ValueType(catch_up or 0), catch_up_limit=catch_up_limit or 0,
    )  # fmt: skip
    return Call("CreateSchedule", request, lambda r: schedule_from_pb(r.schedule), Route.ONCE)


def update_schedule(
    name: str,
    *,
    cron: str | None = None,
    time_zone: str | None = None,
    task: TaskTemplate | None = None,
    catch_up: CatchUp | None = None,
    catch_up_limit: int | None = None,
) -> Call[ScheduleInfo]:
    """Change what is given; the rest is kept."""
    request = pb.UpdateScheduleRequest(
        name=name, catch_up=pb.CatchUpPolicy.ValueType(catch_up or 0)
    )
    if cron is not None:
        request.cron = cron
    if time_zone is not None:
        request.time_zone = time_zone
    if task is not None:
        request.task.CopyFrom(template_to_pb(task))
    if catch_up_limit is not None:
        request.catch_up_limit = catch_up_limit
    return Call("UpdateSchedule", request, lambda reply: schedule_from_pb(reply.schedule))


def list_schedules() -> Call[list[ScheduleInfo]]:
    """Every schedule, by name."""
    return Call(
        "ListSchedules",
        pb.ListSchedulesRequest(),
        lambda reply: [schedule_from_pb(s) for s in reply.schedules],
    )


def delete_schedule(name: str) -> Call[None]:
    """Remove a schedule (the tasks it created stay). ScheduleNotFound if there is none."""
    return Call("DeleteSchedule", pb.DeleteScheduleRequest(name=name), lambda _: None, Route.ONCE)


def pause_schedule(name: str) -> Call[ScheduleInfo]:
    """Stop a schedule from firing until resume_schedule."""
    request = pb.PauseScheduleRequest(name=name)
    return Call("PauseSchedule", request, lambda reply: schedule_from_pb(reply.schedule))


def resume_schedule(name: str) -> Call[ScheduleInfo]:
    """Fire again from the first tick after now (the ticks of the pause are skipped)."""
    request = pb.ResumeScheduleRequest(name=name)
    return Call("ResumeSchedule", request, lambda reply: schedule_from_pb(reply.schedule))
