"""One WorkTasks stream of a Worker (the protocol is in docs/stream-protocol.md)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Protocol

import grpc

from asyncflow._sdk.errors import from_pb
from asyncflow.errors import FailedPrecondition, NotFound
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

log = logging.getLogger("asyncflow.worker")

Request = pb.WorkTasksRequest
Answer = asyncio.Future[pb.ReportResult | None]
"""The server's answer to one report; None if the stream ended without one."""


class StreamListener(Protocol):
    """What a stream hands on: pushed tasks and the answers to lease renewals."""

    def tasks_pushed(self, tasks: list[pb.Task], connection: StreamConnection) -> None: ...

    def lease_renewed(self, task_id: str, deadline: int) -> None: ...

    def lease_lost(self, task_id: str) -> None: ...

    def tasks_cancelled(self, task_ids: list[str], reason: str) -> None: ...


class StreamConnection:
    """Sends subscribe/started/reports/extends, and hands what the server sends on.

    Each report gets an Answer, resolved when the server answers it, or with
    None when the stream ends first (the report may or may not have been
    applied: the Reporter sends it again).
    """

    def __init__(self, stub: pb_grpc.TaskServiceAsyncStub, listener: StreamListener) -> None:
        self._stub = stub
        self._listener = listener
        self._outbox: asyncio.Queue[Request | None] = asyncio.Queue()
        self.unacked: dict[str, list[Answer]] = {}
        """Answers awaited per task id, oldest first (a task re-pushed at once may be
        reported again before the first answer is back)."""
        self.window = 0
        self.open = False
        self._folding: dict[str, Request] = {}
        """The reports and the start acks waiting in the outbox, by kind: more of
        the same kind join them (a message and its wrapper less per task) until
        a message of another kind goes in behind them (see coalesce)."""

    async def _requests(self) -> AsyncIterator[Request]:
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            self._folding.clear()  # taken out: no longer to be added to
            for request in coalesce(batch):
                if request is None:
                    return
                yield request

    async def run(self, task_types: list[str], window: int, worker_id: str) -> None:
        """Subscribe, then read until the server ends the stream (or it breaks)."""
        self.window = window
        subscribe = Request.Subscribe(task_types=task_types, window=window, worker_id=worker_id)
        self._put(Request(subscribe=subscribe))
        call = self._stub.WorkTasks(self._requests())
        try:
            while (message := await call.read()) is not grpc.aio.EOF:
                assert isinstance(message, pb.WorkTasksResponse)
                self._receive(message)
        finally:
            self.open = False
            self._put(None)
            call.cancel()
            for answers in self.unacked.values():
                for answer in answers:
                    _resolve(answer, None)
            self.unacked.clear()

    def _receive(self, message: pb.WorkTasksResponse) -> None:
        which = message.WhichOneof("response")
        if which == "subscribed":
            self.open = True
            log.info("stream %s subscribed (window %d)", message.subscribed.stream_id, self.window)
        elif which == "tasks":
            self._listener.tasks_pushed(list(message.tasks.tasks), self)
        elif which == "report_results":
            for result in message.report_results.results:
                answers = self.unacked.get(result.task_id)
                if answers:
                    _resolve(answers.pop(0), result)
                    if not answers:
                        del self.unacked[result.task_id]
        elif which == "cancelled":
            cancelled = message.cancelled
            self._listener.tasks_cancelled(list(cancelled.task_ids), cancelled.reason)
        elif which == "extend_results":
            for extended in message.extend_results.results:
                if not extended.HasField("error"):
                    self._listener.lease_renewed(extended.task_id, extended.lease.deadline)
                elif isinstance(from_pb(extended.error), FailedPrecondition | NotFound):
                    self._listener.lease_lost(extended.task_id)

    def _put(self, request: Request | None) -> None:
        """Queue a message that keeps its place: what follows must not join the
        reports or start acks queued before it."""
        self._folding.clear()
        self._outbox.put_nowait(request)

    def close(self) -> None:
        """End our side of the stream; the server then ends its side."""
        self._put(None)

    async def acked(self, within: float) -> None:
        """Wait (up to `within` seconds) until every report has been answered."""
        answers = [answer for waiting in self.unacked.values() for answer in waiting]
        if answers:
            await asyncio.wait(answers, timeout=within)

    def started(self, task_id: str) -> None:
        """Tell the server this pushed task now runs (it stays leased if we die)."""
        waiting = self._folding.get("started")
        if waiting is not None:
            waiting.started.task_ids.append(task_id)
            return
        request = Request(started=Request.Started(task_ids=[task_id]))
        self._folding["started"] = request
        self._outbox.put_nowait(request)

    def report(self, report: pb.SetTaskRequest) -> Answer:
        answer: Answer = asyncio.get_running_loop().create_future()
        self.unacked.setdefault(report.task_id, []).append(answer)
        waiting = self._folding.get("reports")
        if waiting is not None:
            waiting.reports.reports.append(report)
            return answer
        request = Request(reports=Request.Reports(reports=[report]))
        self._folding["reports"] = request
        self._outbox.put_nowait(request)
        return answer

    def extend(self, task_id: str, lease_token: str) -> None:
        lease = pb.ExtendLeaseRequest(task_id=task_id, lease_token=lease_token)
        self._put(Request(extend=Request.Extend(leases=[lease])))

    def set_window(self, window: int) -> None:
        if window != self.window:
            self.window = window
            self._put(Request(set_window=Request.SetWindow(window=window)))


def _resolve(answer: Answer, result: pb.ReportResult | None) -> None:
    if not answer.done():  # its reporter may have been cancelled (the worker stopped)
        answer.set_result(result)


def coalesce(batch: list[Request | None]) -> list[Request | None]:
    """Fold the reports (and the start acks) of a batch into one message each, at
    the place of the first, up to the next message of another kind that must keep
    its order (set_window, the end). Every message costs the server a read and an
    answer; the order between reports and start acks does not matter (a start
    ack after its task's report is ignored)."""
    out: list[Request | None] = []
    folding: dict[str, Request] = {}
    for request in batch:
        kind = request.WhichOneof("request") if request is not None else None
        if request is not None and kind in ("reports", "started"):
            into = folding.get(kind)
            if into is None:
                folding[kind] = request
                out.append(request)
            elif kind == "reports":
                into.reports.reports.extend(request.reports.reports)
            else:
                into.started.task_ids.extend(request.started.task_ids)
            continue
        folding.clear()  # keep what came before a window change or the end before it
        out.append(request)
    return out
