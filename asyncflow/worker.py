"""The worker side of the Python SDK: run handlers for task types.

    worker = Worker("localhost:50051", concurrency=20)

    @worker.handler("lark")
    async def lark(job: Job) -> RunNext | Done | None:
        if job.stage == "sendmsg":
            return RunNext("record", context=job.context)
        return Done()

    async with worker:          # or: await worker.run()
        ...

A handler returns None/Done (task succeeded) or RunNext; raises RetryLater
(run again after a delay) or NonRetryable (fail now); any other exception
follows the type's retry policy. Tasks arrive on a WorkTasks stream by default
(unary HoldTasks polling with stream=False); the worker reconnects with
back-off, renews leases of long stages, and on stop() takes no new tasks,
lets running ones finish within a grace period and gives the rest back.
Signal handling is left to the caller (`asyncflow worker` does it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import grpc

from asyncflow._sdk.convert import CHANNEL_OPTIONS
from asyncflow._sdk.errors import call, from_rpc_error
from asyncflow._sdk.job import (
    Done,
    Handler,
    Job,
    NonRetryable,
    RetryLater,
    RunNext,
    release_report,
    run_handler,
)
from asyncflow._sdk.stream import StreamConnection
from asyncflow.errors import AsyncflowError, FailedPrecondition, InvalidArgument, NotFound
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

__all__ = ["Done", "Handler", "Job", "NonRetryable", "RetryLater", "RunNext", "Worker"]

log = logging.getLogger("asyncflow.worker")

RECONNECT_MIN = 0.1
RECONNECT_MAX = 10.0
REPORT_ATTEMPTS = 5
ACK_WAIT = 5.0
"""On stop, how long to wait for the server to answer the last reports."""


@dataclass
class _Running:
    task: pb.Task
    handler: asyncio.Task[pb.SetTaskRequest]
    origin: StreamConnection | None
    """The stream that pushed it (None: held by polling)."""
    release: bool = False
    """Cancelled by stop(): give it back. (Cancelled otherwise: the lease is lost.)"""


class Worker:
    def __init__(
        self,
        address: str = "localhost:50051",
        *,
        handlers: Mapping[str, Handler] | None = None,
        concurrency: int = 10,
        prefetch: int = 0,
        stream: bool = True,
        poll_interval: float = 1.0,
        worker_id: str = "",
    ) -> None:
        if concurrency < 1 or prefetch < 0:
            raise ValueError("concurrency must be at least 1 and prefetch at least 0")
        self.address = address
        self.concurrency = concurrency
        self.prefetch = prefetch
        """Streamed tasks held beyond `concurrency`, waiting un-started so the
        next stage begins without a round trip; given back if the worker dies."""
        self.stream = stream
        self.poll_interval = poll_interval
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self._running: dict[str, _Running] = {}
        self._waiting: deque[tuple[pb.Task, StreamConnection]] = deque()
        self._heartbeats: dict[str, asyncio.Task[None]] = {}
        """Lease renewals, from a task's arrival (prefetched ones too) to its report."""
        self._connection: StreamConnection | None = None
        self._stub: pb_grpc.TaskServiceAsyncStub | None = None
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._grace = 30.0
        self._runner: asyncio.Task[None] | None = None
        self._reports: set[asyncio.Task[None]] = set()
        self.completed = 0
        """Stages this worker has run and reported."""

    # -- registration -------------------------------------------------------------

    def handler(self, task_type: str) -> Callable[[Handler], Handler]:
        """Decorator: run the function for tasks of `task_type`."""

        def register(function: Handler) -> Handler:
            self._handlers[task_type] = function
            return function

        return register

    @property
    def task_types(self) -> list[str]:
        return sorted(self._handlers)

    # -- lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> Worker:
        self._runner = asyncio.create_task(self.run(), name="asyncflow-worker")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Work until stop() is called (or a subscription is refused)."""
        if not self._handlers:
            raise ValueError("no handlers registered")
        channel = grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.TaskServiceStub(channel)
        try:
            if self.stream:
                await self._run_streams()
            else:
                await self._run_polling()
        finally:
            await self._drain()
            await channel.close()

    async def stop(self, grace: float = 30.0) -> None:
        """Stop taking tasks, give running ones `grace` seconds, release the rest.
        Idempotent; returns once the worker has stopped."""
        self._grace = grace
        self._stopping.set()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._runner), grace + 10)

    # -- streaming ----------------------------------------------------------------

    async def _run_streams(self) -> None:
        assert self._stub is not None
        delay = RECONNECT_MIN
        while not self._stopping.is_set():
            await self._wait_for_room()
            if self._stopping.is_set():
                break
            connection = StreamConnection(self._stub, self._start_all, self._lease_lost)
            self._connection = connection
            reading = asyncio.create_task(
                connection.run(self.task_types, self._room() + self.prefetch, self.worker_id)
            )
            stopping = asyncio.create_task(self._stopping.wait())
            try:
                await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():
                    # Stopping: take nothing more, finish (or release) what runs,
                    # with the reports still travelling on this stream.
                    connection.set_window(0)
                    await self._drain()
                    await connection.acked(ACK_WAIT)
                    connection.close()
                await reading
                delay = RECONNECT_MIN  # the server ended the stream: reconnect now
            except grpc.aio.AioRpcError as error:
                failure = from_rpc_error(error)
                if isinstance(failure, InvalidArgument):
                    raise failure from None  # a malformed subscription never gets better
                # Not registered yet (workers may start before producers), or gone.
                log.warning("stream ended (%s); reconnecting in %.1fs", failure, delay)
            finally:
                stopping.cancel()
                self._connection = None
                await self._resend(connection)
            await self._sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, RECONNECT_MAX)

    def _room(self) -> int:
        return self.concurrency - len(self._running)

    async def _wait_for_room(self) -> None:
        while self._room() < 1 and not self._stopping.is_set():
            self._slot_freed.clear()
            await self._sleep_until(self._slot_freed)

    def _start_all(self, tasks: list[pb.Task], origin: StreamConnection) -> None:
        for task in tasks:
            if self._stopping.is_set():
                origin.report(release_report(task))
            else:
                self._begin_lease(task)
                self._waiting.append((task, origin))
        self._start_waiting()

    def _start_waiting(self) -> None:
        while self._waiting and len(self._running) < self.concurrency:
            task, origin = self._waiting.popleft()
            if origin is not self._connection or not origin.open:
                self._end_lease(task.task_id)
                continue  # its stream is gone: the server has taken it back
            origin.started(task.task_id)
            self._start(task, origin)

    def _lease_lost(self, task_id: str) -> None:
        running = self._running.get(task_id)
        if running is not None:
            log.warning("lease of %s was lost; abandoning its stage", task_id)
            running.handler.cancel()
        else:  # still waiting to start: simply forget it
            self._waiting = deque((t, o) for t, o in self._waiting if t.task_id != task_id)
            self._end_lease(task_id)

    def _begin_lease(self, task: pb.Task) -> None:
        if task.task_id not in self._heartbeats:
            self._heartbeats[task.task_id] = asyncio.create_task(self._heartbeat(task))

    def _end_lease(self, task_id: str) -> None:
        heartbeat = self._heartbeats.pop(task_id, None)
        if heartbeat is not None:
            heartbeat.cancel()

    async def _resend(self, connection: StreamConnection) -> None:
        """Reports the dead stream may not have delivered go by unary SetTask."""
        for report in list(connection.unacked.values()):
            await self._report_unary(report)
        # Its un-started tasks were released by the server when it ended.
        for task, origin in self._waiting:
            if origin is connection:
                self._end_lease(task.task_id)
        self._waiting = deque((t, o) for t, o in self._waiting if o is not connection)

    # -- polling ------------------------------------------------------------------

    async def _run_polling(self) -> None:
        assert self._stub is not None
        stub = self._stub
        while not self._stopping.is_set():
            held = 0
            for task_type in self.task_types:
                room = self._room()
                if room < 1:
                    break
                request = pb.HoldTasksRequest(task_type=task_type, limit=room)
                try:
                    reply = await stub.HoldTasks(request, timeout=30)
                except grpc.aio.AioRpcError as rpc_error:
                    error = from_rpc_error(rpc_error)
                    if isinstance(error, InvalidArgument):
                        raise error from None
                    log.warning("hold failed (%s); polling again later", error)
                    break
                for task in reply.tasks:
                    self._start(task, None)
                held += len(reply.tasks)
            if held == 0 or self._room() < 1:
                self._slot_freed.clear()
                await self._sleep_until(self._slot_freed, self.poll_interval)

    # -- running handlers ---------------------------------------------------------

    def _start(self, task: pb.Task, origin: StreamConnection | None) -> None:
        handler = self._handlers.get(task.task_type)
        if handler is None:  # not subscribed to it; cannot happen on a sane server
            log.error("no handler for %s; releasing %s", task.task_type, task.task_id)
            self._end_lease(task.task_id)
            self._send_report(release_report(task), origin)
            return
        self._begin_lease(task)
        running = _Running(task, asyncio.create_task(run_handler(handler, task)), origin)
        self._running[task.task_id] = running
        supervisor = asyncio.create_task(self._supervise(running))
        self._reports.add(supervisor)
        supervisor.add_done_callback(self._reports.discard)

    async def _supervise(self, running: _Running) -> None:
        task = running.task
        try:
            await asyncio.wait({running.handler})
        finally:
            self._end_lease(task.task_id)
            del self._running[task.task_id]
        if not running.handler.cancelled():
            report: pb.SetTaskRequest | None = running.handler.result()
        else:
            report = release_report(task) if running.release else None
        if report is not None:
            self._send_report(report, running.origin)
            self.completed += 1
        current = self._connection
        if current is not None and running.origin is not current and current.open:
            current.set_window(min(self.concurrency + self.prefetch, current.window + 1))
        self._start_waiting()
        self._slot_freed.set()

    def _send_report(self, report: pb.SetTaskRequest, origin: StreamConnection | None) -> None:
        connection = self._connection
        if connection is not None and connection.open:
            connection.report(report)
            return
        sending = asyncio.create_task(self._report_unary(report))
        self._reports.add(sending)
        sending.add_done_callback(self._reports.discard)

    async def _report_unary(self, report: pb.SetTaskRequest) -> None:
        assert self._stub is not None
        stub = self._stub
        for attempt in range(REPORT_ATTEMPTS):
            try:
                await call(lambda: stub.SetTask(report, timeout=10))
                return
            except (FailedPrecondition, NotFound) as gone:
                log.info("report for %s refused: %s", report.task_id, gone)
                return
            except AsyncflowError as error:
                log.warning("report for %s failed (%s), retrying", report.task_id, error)
                await asyncio.sleep(min(RECONNECT_MAX, RECONNECT_MIN * 2**attempt))
        log.error("gave up reporting %s; its lease will expire", report.task_id)

    async def _heartbeat(self, task: pb.Task) -> None:
        """Renew the lease every third of its length while the stage runs."""
        interval = max(1.0, (task.lease.deadline - time.time()) / 3)
        while True:
            await asyncio.sleep(interval)
            connection = self._connection
            if connection is not None and connection.open:
                connection.extend(task)
                continue
            assert self._stub is not None
            request = pb.ExtendLeaseRequest(task_id=task.task_id, lease_token=task.lease.token)
            try:
                await self._stub.ExtendLease(request, timeout=10)
            except grpc.aio.AioRpcError as rpc_error:
                error = from_rpc_error(rpc_error)
                if not isinstance(error, FailedPrecondition | NotFound):
                    log.warning("lease renewal for %s failed: %s", task.task_id, error)
                    continue
                self._lease_lost(task.task_id)
                return

    async def _drain(self) -> None:
        """Let running stages finish within the grace period; release the rest."""
        while self._waiting:
            task, origin = self._waiting.popleft()
            self._end_lease(task.task_id)
            self._send_report(release_report(task), origin)
        if self._running:
            handlers = [r.handler for r in self._running.values()]
            await asyncio.wait(handlers, timeout=self._grace)
            for running in list(self._running.values()):
                running.release = True
                running.handler.cancel()
        while self._reports:
            await asyncio.gather(*self._reports, return_exceptions=True)

    # -- waiting ------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the worker is stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _sleep_until(self, event: asyncio.Event, seconds: float | None = None) -> None:
        waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._stopping.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
