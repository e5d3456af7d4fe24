"""The worker side of the Python SDK: run handlers for task types.

    worker = Worker("localhost:50051", concurrency=20)

    @worker.handler("lark")
    async def lark(job: Job) -> RunNext | Done | None:
        if job.stage == "sendmsg":
            return RunNext("record", context=job.context)
        return Done()

    async with worker:          # or: await worker.run()
        ...

A handler returns None/Done (task succeeded) or RunNext (run another stage);
raises RetryLater (run again after a delay) or NonRetryable (fail now); any
other exception follows the type's retry policy. Tasks arrive on a WorkTasks
stream by default (unary HoldTasks polling with stream=False); the worker
reconnects with back-off, renews leases of long stages, re-sends a report the
server could not take until the task's lease expires, and on stop() takes no
new tasks, lets running ones finish within a grace period and gives the rest
back. Signal handling is left to the caller (`asyncflow worker` does it).

Worker is a facade over parts with one job each, in asyncflow._sdk: the
StreamRunner or the Poller brings tasks in, the Scheduler queues and runs them,
the LeaseKeeper renews their leases, the Reporter delivers their reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Mapping

import grpc

from asyncflow._sdk.convert import CHANNEL_OPTIONS
from asyncflow._sdk.job import Done, Handler, Job, NonRetryable, RetryLater, RunNext
from asyncflow._sdk.leases import LeaseKeeper
from asyncflow._sdk.polling import Poller
from asyncflow._sdk.reporter import Reporter
from asyncflow._sdk.scheduler import Origin, Scheduler
from asyncflow._sdk.streaming import StreamRunner
from asyncflow._sdk.transport import Transport
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

__all__ = ["Done", "Handler", "Job", "NonRetryable", "RetryLater", "RunNext", "Worker"]


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
        self._stopping = asyncio.Event()
        self._grace = 30.0
        self._runner: asyncio.Task[None] | None = None
        self._scheduler: Scheduler | None = None

    def handler(self, task_type: str) -> Callable[[Handler], Handler]:
        """Decorator: run the function for tasks of `task_type`."""

        def register(function: Handler) -> Handler:
            self._handlers[task_type] = function
            return function

        return register

    @property
    def task_types(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def completed(self) -> int:
        """Stages this worker has run and reported."""
        return self._scheduler.completed if self._scheduler is not None else 0

    async def __aenter__(self) -> Worker:
        self._runner = asyncio.create_task(self.run(), name="asyncflow-worker")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Work until stop() is called (or a subscription is refused as invalid)."""
        if not self._handlers:
            raise ValueError("no handlers registered")
        channel = grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        transport = Transport(pb_grpc.TaskServiceStub(channel))
        streams: StreamRunner | None = None

        def lease_lost(task_id: str) -> None:
            scheduler.lease_lost(task_id)

        def slot_freed(origin: Origin | None) -> None:
            if streams is not None:
                streams.task_finished(origin)

        leases = LeaseKeeper(transport, on_lost=lease_lost)
        reporter = Reporter(transport, leases)
        scheduler = Scheduler(self._handlers, self.concurrency, leases, reporter, slot_freed)
        self._scheduler = scheduler
        if self._stopping.is_set():
            scheduler.close()
        try:
            if self.stream:
                streams = StreamRunner(
                    transport,
                    scheduler,
                    leases,
                    task_types=self.task_types,
                    prefetch=self.prefetch,
                    worker_id=self.worker_id,
                    stopping=self._stopping,
                    drain=lambda: scheduler.drain(self._grace),
                )
                await streams.run()
            else:
                poller = Poller(
                    transport,
                    scheduler,
                    task_types=self.task_types,
                    poll_interval=self.poll_interval,
                    stopping=self._stopping,
                )
                await poller.run()
        finally:
            await scheduler.drain(self._grace)
            await reporter.settled()
            leases.close()
            await channel.close()

    async def stop(self, grace: float = 30.0) -> None:
        """Stop taking tasks, give running stages `grace` seconds, then release the rest.

        Idempotent; returns once the worker has stopped. Reports the server
        cannot take yet are still re-sent until their lease deadline, so a stop
        during a server outage may take up to a lease length longer."""
        self._grace = grace
        self._stopping.set()
        if self._scheduler is not None:
            self._scheduler.close()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._runner)
