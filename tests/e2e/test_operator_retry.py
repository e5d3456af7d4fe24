"""RetryTask and RetryTasks: FAILED or CANCELLED back to PENDING, nothing else."""

from __future__ import annotations

import json

import grpc
import pytest
from conftest import Running
from rpc import SUCCESS, create, error_reason, fail, get, hold, register, report, retry

from asyncflow.clock import ManualClock
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc


async def retry_task(
    stub: pb_grpc.TaskServiceStub, task_id: str, stage: str | None = None
) -> pb.Task:
    request = pb.RetryTaskRequest(task_id=task_id)
    if stage is not None:
        request.task_stage = stage
    return (await stub.RetryTask(request)).task


async def failed_task(stub: pb_grpc.TaskServiceStub, **fields: object) -> pb.Task:
    """A task that used a retry, then failed."""
    await create(stub, **fields)
    (held,) = await hold(stub)
    await report(stub, held, retry("flaky", delay=0))
    (held,) = await hold(stub)
    failed = await report(stub, held, fail("broken"))
    assert (failed.status, failed.crt_retry_num) == (pb.TASK_STATUS_FAILED, 1)
    return failed


async def test_a_failed_task_runs_again_with_a_fresh_retry_budget(
    server: Running, clock: ManualClock
) -> None:
    stub = server.stub
    await register(stub)
    failed = await failed_task(stub, task_stage="send", priority=30)
    clock.advance(100)
    retried = await retry_task(stub, failed.task_id)
    assert (retried.status, retried.crt_retry_num) == (pb.TASK_STATUS_PENDING, 0)
    assert (retried.task_stage, retried.order_time) == ("send", clock.now() - 30)
    log = json.loads(retried.schedule_log)
    assert log["last"]["outcome"] == "operator_retry"
    assert [entry["outcome"] for entry in log["history"]] == ["retry", "fail"]  # kept
    (held,) = await hold(stub)
    assert (held.task_id, held.lease.attempt) == (failed.task_id, 3)
    assert (await report(stub, held, SUCCESS)).status == pb.TASK_STATUS_SUCCESS


async def test_a_cancelled_task_retried_at_another_stage(server: Running) -> None:
    stub = server.stub
    await register(stub)
    task = await create(stub, task_stage="send")
    await stub.CancelTask(pb.CancelTaskRequest(task_id=task.task_id))
    retried = await retry_task(stub, task.task_id, stage="record")
    assert (retried.status, retried.task_stage) == (pb.TASK_STATUS_PENDING, "record")
    assert [t.task_id for t in await hold(stub)] == [task.task_id]


async def test_only_failed_or_cancelled_tasks_are_retried(server: Running) -> None:
    stub = server.stub
    await register(stub)
    for _ in range(3):
        await create(stub)
    done, running = await hold(stub, limit=2)
    succeeded = await report(stub, done, SUCCESS)
    processing = await get(stub, running.task_id)
    (pending,) = [t for t in (await stub.ListTasks(pb.ListTasksRequest(task_type="lark"))).tasks
                  if t.status == pb.TASK_STATUS_PENDING]  # fmt: skip
    for task, status in ((pending, "PENDING"), (processing, "PROCESSING"), (succeeded, "SUCCESS")):
        before = await get(stub, task.task_id)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await retry_task(stub, task.task_id)
        assert error_reason(refused.value) == (
            grpc.StatusCode.FAILED_PRECONDITION, "TASK_NOT_RETRYABLE", "task_id")  # fmt: skip
        assert f"is {status}: only FAILED or CANCELLED" in (refused.value.details() or "")
        assert await get(stub, task.task_id) == before


async def test_bulk_retry_takes_only_the_matching_tasks(server: Running) -> None:
    stub = server.stub
    await register(stub)
    failed = [await failed_task(stub, task_stage="send") for _ in range(3)]
    other_stage = await failed_task(stub, task_stage="record")
    cancelled = await create(stub, task_stage="send")
    await stub.CancelTask(pb.CancelTaskRequest(task_id=cancelled.task_id))
    pending = await create(stub, task_stage="send")

    reply = await stub.RetryTasks(
        pb.RetryTasksRequest(
            task_type="lark", status=pb.TASK_STATUS_FAILED, task_stage="send", page_size=2
        )
    )
    first = [t.task_id for t in reply.tasks]
    assert reply.next_page_token
    reply = await stub.RetryTasks(pb.RetryTasksRequest(
        task_type="lark", status=pb.TASK_STATUS_FAILED, task_stage="send", page_size=2,
        page_token=reply.next_page_token, new_task_stage="again"))  # fmt: skip
    assert sorted(first + [t.task_id for t in reply.tasks]) == sorted(t.task_id for t in failed)
    assert [t.task_stage for t in reply.tasks] == ["again"]
    assert (await get(stub, other_stage.task_id)).status == pb.TASK_STATUS_FAILED
    assert (await get(stub, cancelled.task_id)).status == pb.TASK_STATUS_CANCELLED
    assert (await get(stub, pending.task_id)).order_time == pending.order_time

    both = await stub.RetryTasks(pb.RetryTasksRequest(task_type="lark"))  # FAILED and CANCELLED
    assert {t.task_id for t in both.tasks} == {other_stage.task_id, cancelled.task_id}
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.RetryTasks(pb.RetryTasksRequest(task_type="lark",
                                                   status=pb.TASK_STATUS_PENDING))  # fmt: skip
    assert error_reason(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT",
                                           "status")  # fmt: skip
