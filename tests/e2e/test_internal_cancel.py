"""A cancellation the client did not ask for must still answer the client."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from asyncflow.server.errors import grpc_errors
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc


class Interrupted(pb_grpc.TaskServiceServicer):
    """Ping's work is cancelled from inside the server, as a library's leaked
    timeout would do; GetTask waits until the client gives up."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.client_cancel_seen = asyncio.Event()

    @grpc_errors
    async def Ping(self, request: pb.PingRequest, context: Any) -> pb.PingResponse:
        work = asyncio.ensure_future(asyncio.Event().wait())
        asyncio.get_running_loop().call_soon(work.cancel)
        await work
        return pb.PingResponse()

    @grpc_errors
    async def GetTask(self, request: pb.GetTaskRequest, context: Any) -> pb.GetTaskResponse:
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.client_cancel_seen.set()
        return pb.GetTaskResponse()


@pytest.fixture
async def interrupted() -> Any:
    servicer = Interrupted()
    server = grpc.aio.server()
    pb_grpc.add_TaskServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield servicer, pb_grpc.TaskServiceStub(channel)
    await channel.close()
    await server.stop(None)


async def test_a_cancel_inside_the_server_answers_unavailable(interrupted: Any) -> None:
    _, stub = interrupted
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Ping(pb.PingRequest(), timeout=10)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_client_cancel_still_cancels_the_handler(interrupted: Any) -> None:
    servicer, stub = interrupted
    call = stub.GetTask(pb.GetTaskRequest(task_id="x"))
    await asyncio.wait_for(servicer.started.wait(), 10)
    call.cancel()
    await asyncio.wait_for(servicer.client_cancel_seen.wait(), 10)
    assert call.cancelled()
