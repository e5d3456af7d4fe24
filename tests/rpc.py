"""Small wrappers over the generated stub, so tests read as the scenario they check."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

Outcome = (
    pb.SetTaskRequest.Success
    | pb.SetTaskRequest.NextStage
    | pb.SetTaskRequest.Retry
    | pb.SetTaskRequest.Fail
)
OUTCOME_FIELD = {
    pb.SetTaskRequest.Success: "success",
    pb.SetTaskRequest.NextStage: "next_stage",
    pb.SetTaskRequest.Retry: "retry",
    pb.SetTaskRequest.Fail: "fail",
}


async def register(
    stub: pb_grpc.TaskServiceStub, task_type: str = "lark", **settings: int
) -> pb.TaskTypeConfig:
    reply = await stub.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type=task_type, **settings))
    return reply.task_type


async def create(
    stub: pb_grpc.TaskServiceStub, task_type: str = "lark", **fields: object
) -> pb.Task:
    reply = await stub.CreateTask(pb.CreateTaskRequest(task_type=task_type, **fields))  # type: ignore[arg-type]
    return reply.task


async def hold(
    stub: pb_grpc.TaskServiceStub, task_type: str = "lark", limit: int = 0
) -> list[pb.Task]:
    reply = await stub.HoldTasks(pb.HoldTasksRequest(task_type=task_type, limit=limit))
    return list(reply.tasks)


async def report(
    stub: pb_grpc.TaskServiceStub,
    task: pb.Task,
    outcome: Outcome,
    *,
    token: str | None = None,
    context: str | None = None,
) -> pb.Task:
    """SetTask for a held task (its own lease token unless `token` is given)."""
    request = pb.SetTaskRequest(
        task_id=task.task_id, lease_token=task.lease.token if token is None else token
    )
    getattr(request, OUTCOME_FIELD[type(outcome)]).CopyFrom(outcome)
    if context is not None:
        request.context = context
    reply = await stub.SetTask(request)
    return reply.task


async def get(stub: pb_grpc.TaskServiceStub, task_id: str) -> pb.Task:
    return (await stub.GetTask(pb.GetTaskRequest(task_id=task_id))).task


async def counts(stub: pb_grpc.TaskServiceStub, task_type: str = "lark") -> dict[int, int]:
    reply = await stub.CountTasks(pb.CountTasksRequest(task_type=task_type))
    return {c.status: c.count for c in reply.counts}


def error_reason(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, str]:
    """(code, ErrorInfo.reason, ErrorInfo.metadata['field']) of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, f"no rich status on {error}"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return error.code(), info.reason, info.metadata.get("field", "")


SUCCESS = pb.SetTaskRequest.Success()


def next_stage(stage: str) -> pb.SetTaskRequest.NextStage:
    return pb.SetTaskRequest.NextStage(task_stage=stage)


def retry(error: str = "boom", delay: int | None = None) -> pb.SetTaskRequest.Retry:
    message = pb.SetTaskRequest.Retry(error_message=error)
    if delay is not None:
        message.delay_seconds = delay
    return message


def fail(error: str = "fatal") -> pb.SetTaskRequest.Fail:
    return pb.SetTaskRequest.Fail(error_message=error)
