"""A raw WorkTasks client (no SDK), so tests drive the stream protocol on the wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from waiting import eventually

from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

Request = pb.WorkTasksRequest


class RawWorker:
    """One WorkTasks stream; tasks and answers are collected as they arrive."""

    def __init__(self, stub: pb_grpc.TaskServiceStub) -> None:
        self._outbox: asyncio.Queue[Request | None] = asyncio.Queue()
        self.call = stub.WorkTasks(self._requests())
        self.tasks: list[pb.Task] = []
        self.answers: list[pb.WorkTasksResponse] = []
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def _requests(self) -> AsyncIterator[Request]:
        while (request := await self._outbox.get()) is not None:
            yield request

    async def subscribe(self, *task_types: str, window: int) -> pb.WorkTasksResponse:
        await self.send(subscribe(*task_types, window=window))
        first = await self.call.read()
        assert isinstance(first, pb.WorkTasksResponse)
        self._reader = asyncio.create_task(self._read())
        return first

    async def _read(self) -> None:
        while (message := await self.call.read()) is not grpc.aio.EOF:
            assert isinstance(message, pb.WorkTasksResponse)
            if message.HasField("tasks"):
                self.tasks.extend(message.tasks.tasks)
            else:
                self.answers.append(message)
            self._arrived.set()

    async def send(self, request: Request) -> None:
        await self._outbox.put(request)

    async def until(self, tasks: int = 0, answers: int = 0, within: float = 10) -> None:
        async def arrived() -> bool:
            return len(self.tasks) >= tasks and len(self.answers) >= answers

        await eventually(arrived, within=within, what=f"{tasks} tasks and {answers} answers")

    async def report_success(self, *tasks: pb.Task) -> None:
        reports = [
            pb.SetTaskRequest(
                task_id=t.task_id, lease_token=t.lease.token, success=pb.SetTaskRequest.Success()
            )
            for t in tasks
        ]
        await self.send(Request(reports=Request.Reports(reports=reports)))

    async def close(self) -> None:
        await self._outbox.put(None)
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def ended(self) -> grpc.aio.AioRpcError | None:
        """Wait until the server ends the stream: its error, or None for OK."""
        assert self._reader is not None, "subscribe first"
        (outcome,) = await asyncio.gather(self._reader, return_exceptions=True)
        if isinstance(outcome, grpc.aio.AioRpcError):
            return outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return None

    def cancel(self) -> None:
        # End the request generator too: once the server has ended the call,
        # cancel() does nothing, and grpc's task feeding the requests would stay
        # pending until the garbage collector destroys it (an asyncio ERROR).
        self._outbox.put_nowait(None)
        self.call.cancel()


def subscribe(*task_types: str, window: int = 1) -> Request:
    return Request(subscribe=Request.Subscribe(task_types=task_types, window=window))
