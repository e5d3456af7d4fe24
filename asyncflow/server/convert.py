"""Protobuf messages <-> domain values. No rules here: only shape."""

from __future__ import annotations

from asyncflow.core.model import (
    CreateRequest,
    Fail,
    NextStage,
    Outcome,
    Release,
    Retry,
    Success,
    Task,
    TaskFilter,
    TaskStatus,
    TaskTypeConfig,
    TypeSettings,
    from_fields,
)
from asyncflow.errors import AsyncflowError, InvalidArgument
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.wire import STRATEGY_FROM_PB, STRATEGY_TO_PB


def task_to_pb(task: Task, *, with_token: bool = False) -> pb.Task:
    """The lease token is a capability: only the holder that got it sees it."""
    return fill_task(pb.Task(), task, with_token=with_token)


def fill_task(message: pb.Task, task: Task, *, with_token: bool = False) -> pb.Task:
    """task_to_pb into `message` (a new one, e.g. from a repeated field's add()),
    setting only the fields that differ from proto3's defaults: keyword
    construction of a Task, then copying it into its parent message, cost about
    three times as much (a bulk create's reply holds 1,000 of them)."""
    message.task_id = task.task_id
    message.task_type = task.task_type
    if task.user_id:
        message.user_id = task.user_id
    if task.task_stage:
        message.task_stage = task.task_stage
    message.status = pb.TaskStatus.ValueType(task.status)
    if task.priority:
        message.priority = task.priority
    if task.crt_retry_num:
        message.crt_retry_num = task.crt_retry_num
    message.max_retry_num = task.max_retry_num
    if task.context:
        message.context = task.context
    if task.schedule_log:
        message.schedule_log = task.schedule_log
    message.order_time = task.order_time
    message.create_time = task.create_time
    message.modify_time = task.modify_time
    if task.status is TaskStatus.PROCESSING:
        lease = message.lease
        lease.SetInParent()  # present even if every field were a default
        if with_token:
            lease.token = task.lease_token
        lease.attempt = task.hold_count
        lease.deadline = task.lease_deadline
    return message


def config_to_pb(config: TaskTypeConfig) -> pb.TaskTypeConfig:
    return pb.TaskTypeConfig(
        task_type=config.task_type,
        schedule_limit=config.schedule_limit,
        schedule_interval_seconds=config.schedule_interval,
        max_processing_time_seconds=config.max_processing_time,
        max_retry_num=config.max_retry_num,
        retry_strategy=STRATEGY_TO_PB[config.retry.strategy],
        retry_interval_seconds=config.retry.interval,
        max_retry_interval_seconds=config.retry.max_interval,
        begin_pos=config.begin_pos,
        end_pos=config.end_pos,
        data_begin_pos=config.data_begin_pos,
        create_time=config.create_time,
        modify_time=config.modify_time,
        paused=config.paused,
    )


def settings_from_pb(request: pb.RegisterTaskTypeRequest) -> TypeSettings:
    def given(name: str) -> int | None:
        return int(getattr(request, name)) if request.HasField(name) else None  # type: ignore[arg-type]

    strategy = None
    if request.retry_strategy != pb.RETRY_STRATEGY_UNSPECIFIED:
        if request.retry_strategy not in STRATEGY_FROM_PB:
            raise InvalidArgument(
                f"retry_strategy {request.retry_strategy} is not a known strategy",
                field="retry_strategy",
            )
        strategy = STRATEGY_FROM_PB[request.retry_strategy]
    return TypeSettings(
        task_type=request.task_type,
        schedule_limit=given("schedule_limit"),
        schedule_interval=given("schedule_interval_seconds"),
        max_processing_time=given("max_processing_time_seconds"),
        max_retry_num=given("max_retry_num"),
        retry_strategy=strategy,
        retry_interval=given("retry_interval_seconds"),
        max_retry_interval=given("max_retry_interval_seconds"),
    )


def outcome_from_pb(request: pb.SetTaskRequest) -> Outcome:
    which = request.WhichOneof("outcome")
    if which == "success":
        return Success()
    if which == "next_stage":
        return NextStage(request.next_stage.task_stage)
    if which == "retry":
        delay = request.retry.delay_seconds if request.retry.HasField("delay_seconds") else None
        return Retry(request.retry.error_message, delay)
    if which == "fail":
        return Fail(request.fail.error_message)
    if which == "release":
        return Release()
    raise InvalidArgument(
        "outcome is required: one of success, next_stage, retry, fail, release", field="outcome"
    )


def status_from_pb(value: int, field: str = "status") -> TaskStatus | None:
    """UNSPECIFIED (0) means no filter."""
    if value == pb.TASK_STATUS_UNSPECIFIED:
        return None
    try:
        return TaskStatus(value)
    except ValueError:
        raise InvalidArgument(f"{field} {value} is not a task status", field=field) from None


def filter_from_pb(request: pb.ListTasksRequest) -> TaskFilter:
    return TaskFilter(
        status=status_from_pb(request.status),
        task_stage=request.task_stage or None,
        user_id=request.user_id or None,
    )


def error_to_pb(error: AsyncflowError) -> pb.ItemError:
    """A refused item of a stream batch, as the unary call's status would say it."""
    return pb.ItemError(
        code=error.code, reason=error.reason, field=error.field, message=error.message
    )


def create_request_from_pb(request: pb.CreateTaskRequest) -> CreateRequest:
    # Without CreateRequest's __init__ (model.from_fields): CreateTasks converts 1,000.
    return from_fields(CreateRequest, {
        "task_type": request.task_type,
        "user_id": request.user_id,
        "task_stage": request.task_stage,
        "context": request.context,
        "priority": request.priority,
        "idempotency_key": request.idempotency_key,
        "run_at": request.run_at,
    })  # fmt: skip
