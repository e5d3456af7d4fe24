"""An operator cancels a task a Worker is running: its handler is cancelled, nothing is
reported, the task ends CANCELLED, and a late report with its lease is refused."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from conftest import Running
from rpc import error_reason
from waiting import eventually

from asyncflow.client import Client, TaskSpec, TaskStatus
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.worker import Job, Worker


async def test_the_running_handler_is_cancelled(server: Running) -> None:
    started: dict[str, asyncio.Event] = {}
    cancelled: list[str] = []
    finished: list[str] = []
    release = asyncio.Event()

    async def slow(job: Job) -> None:
        started.setdefault(job.task_id, asyncio.Event()).set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled.append(job.task_id)
            raise
        finished.append(job.task_id)

    async with Client(server.address) as client:
        await client.register_type("slow", max_processing_time=300)
        doomed, kept = await client.create_many([TaskSpec("slow"), TaskSpec("slow")])
        async with Worker(server.address, handlers={"slow": slow}, concurrency=2):

            async def both_running() -> bool:
                return {doomed.task_id, kept.task_id} <= started.keys()

            await eventually(both_running, what="both stages started")
            row = await server.server.core.store.task_get("slow", 1, doomed.task_id)
            assert row is not None
            token = row.lease_token
            reply = await server.stub.CancelTask(
                pb.CancelTaskRequest(task_id=doomed.task_id, reason="stop it")
            )
            assert reply.task.status == pb.TASK_STATUS_CANCELLED

            async def handler_cancelled() -> bool:
                return cancelled == [doomed.task_id]

            await eventually(handler_cancelled, what="the handler sees the cancellation")
            release.set()  # the other stage goes on and finishes normally

            async def kept_done() -> bool:
                return (await client.get(kept.task_id)).status is TaskStatus.SUCCESS

            await eventually(kept_done, what="the other task finished")
        assert finished == [kept.task_id]
        assert (await client.get(doomed.task_id)).status is TaskStatus.CANCELLED

    late = pb.SetTaskRequest(task_id=doomed.task_id, lease_token=token)
    late.success.SetInParent()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await server.stub.SetTask(late)
    assert error_reason(refused.value) == (grpc.StatusCode.FAILED_PRECONDITION, "TASK_CANCELLED",
                                           "task_id")  # fmt: skip
