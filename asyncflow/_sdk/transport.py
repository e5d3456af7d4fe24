"""The worker's way to the server: the open WorkTasks stream if any, else unary calls."""

from __future__ import annotations

from asyncflow._sdk.errors import call
from asyncflow._sdk.stream import StreamConnection
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

RPC_TIMEOUT = 10.0
"""Seconds a unary report or renewal may take before it counts as failed."""
HOLD_TIMEOUT = 30.0


class Transport:
    """Reports and renewals go on the stream while one is open (the server frees
    the window slot of a task reported on the stream that pushed it), and by
    SetTask / ExtendLease otherwise; leases belong to the task, so both work."""

    def __init__(self, stub: pb_grpc.TaskServiceAsyncStub) -> None:
        self.stub = stub
        self.stream: StreamConnection | None = None
        """The current stream (set by the StreamRunner while one is connected)."""

    def open_stream(self) -> StreamConnection | None:
        stream = self.stream
        return stream if stream is not None and stream.open else None

    async def set_task(self, report: pb.SetTaskRequest) -> None:
        """Deliver one report; a refusal raises its asyncflow error."""
        await call(lambda: self.stub.SetTask(report, timeout=RPC_TIMEOUT))

    async def extend_lease(self, task_id: str, lease_token: str) -> int:
        """Renew one lease; returns its new deadline. A refusal raises its asyncflow error."""
        request = pb.ExtendLeaseRequest(task_id=task_id, lease_token=lease_token)
        reply = await call(lambda: self.stub.ExtendLease(request, timeout=RPC_TIMEOUT))
        return reply.lease.deadline

    async def hold_tasks(self, task_type: str, limit: int) -> list[pb.Task]:
        """Lease up to `limit` due tasks of a type (unary HoldTasks)."""
        request = pb.HoldTasksRequest(task_type=task_type, limit=limit)
        reply = await call(lambda: self.stub.HoldTasks(request, timeout=HOLD_TIMEOUT))
        return list(reply.tasks)
