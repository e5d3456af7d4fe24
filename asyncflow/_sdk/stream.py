"""One WorkTasks stream of a Worker (the protocol is in docs/stream-protocol.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import grpc

from asyncflow._sdk.errors import from_pb
from asyncflow.errors import FailedPrecondition, NotFound
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

log = logging.getLogger("asyncflow.worker")

Request = pb.WorkTasksRequest


class StreamConnection:
    """Sends subscribe/started/reports/extends; hands pushed tasks to `on_tasks`.

    Reports stay "unacked" until the server answers them; when the stream dies
    the worker re-sends those by unary SetTask, so no outcome is lost.
    """

    def __init__(
        self,
        stub: pb_grpc.TaskServiceAsyncStub,
        on_tasks: Callable[[list[pb.Task], StreamConnection], None],
        on_lease_lost: Callable[[str], None],
    ) -> None:
        self._stub = stub
        self._on_tasks = on_tasks
        self._on_lease_lost = on_lease_lost
        self._outbox: asyncio.Queue[Request | None] = asyncio.Queue()
        self.unacked: dict[str, pb.SetTaskRequest] = {}
        self.window = 0
        self.open = False
        self._answered = asyncio.Event()

    async def _requests(self) -> AsyncIterator[Request]:
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            for request in coalesce(batch):
                if request is None:
                    return
                yield request

    async def run(self, task_types: list[str], window: int, worker_id: str) -> None:
        """Subscribe, then read until the server ends the stream (or it breaks)."""
        self.window = window
        subscribe = Request.Subscribe(task_types=task_types, window=window, worker_id=worker_id)
        self._outbox.put_nowait(Request(subscribe=subscribe))
        call = self._stub.WorkTasks(self._requests())
        try:
            while (message := await call.read()) is not grpc.aio.EOF:
                assert isinstance(message, pb.WorkTasksResponse)
                self._receive(message)
        finally:
            self.open = False
            self._outbox.put_nowait(None)
            call.cancel()

    def _receive(self, message: pb.WorkTasksResponse) -> None:
        which = message.WhichOneof("response")
        if which == "subscribed":
            self.open = True
            log.info("stream %s subscribed (window %d)", message.subscribed.stream_id, self.window)
        elif which == "tasks":
            self._on_tasks(list(message.tasks.tasks), self)
        elif which == "report_results":
            for result in message.report_results.results:
                self.unacked.pop(result.task_id, None)
                if result.HasField("error"):
                    log.warning("report for %s refused: %s", result.task_id, from_pb(result.error))
            self._answered.set()
        elif which == "extend_results":
            for extended in message.extend_results.results:
                if extended.HasField("error"):
                    error = from_pb(extended.error)
                    if isinstance(error, FailedPrecondition | NotFound):
                        self._on_lease_lost(extended.task_id)

    def close(self) -> None:
        """End our side of the stream; the server then ends its side."""
        self._outbox.put_nowait(None)

    async def acked(self, within: float) -> None:
        """Wait (up to `within` seconds) until every report has been answered."""
        deadline = asyncio.get_running_loop().time() + within
        while self.unacked and self.open and asyncio.get_running_loop().time() < deadline:
            self._answered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), 0.1)

    def started(self, task_id: str) -> None:
        """Tell the server this pushed task now runs (it stays leased if we die)."""
        self._outbox.put_nowait(Request(started=Request.Started(task_ids=[task_id])))

    def report(self, report: pb.SetTaskRequest) -> None:
        self.unacked[report.task_id] = report
        self._outbox.put_nowait(Request(reports=Request.Reports(reports=[report])))

    def extend(self, task: pb.Task) -> None:
        lease = pb.ExtendLeaseRequest(task_id=task.task_id, lease_token=task.lease.token)
        self._outbox.put_nowait(Request(extend=Request.Extend(leases=[lease])))

    def set_window(self, window: int) -> None:
        if window != self.window:
            self.window = window
            self._outbox.put_nowait(Request(set_window=Request.SetWindow(window=window)))


def coalesce(batch: list[Request | None]) -> list[Request | None]:
    """Fold adjacent reports (and adjacent start acks) into one message each."""
    out: list[Request | None] = []
    for request in batch:
        last = out[-1] if out else None
        kind = request.WhichOneof("request") if request is not None else None
        if (
            last is not None
            and kind in ("reports", "started")
            and last.WhichOneof("request") == kind
        ):
            assert request is not None
            if kind == "reports":
                last.reports.reports.extend(request.reports.reports)
            else:
                last.started.task_ids.extend(request.started.task_ids)
            continue
        out.append(request)
    return out
