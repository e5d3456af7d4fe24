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
stream by default (unary HoldTasks polling with stream=False), one stream per
replica when the address lists several; the worker reconnects with back-off,
renews leases of long stages, re-sends a report the server could not take until
the task's lease expires, and on stop() takes no new tasks, lets running ones
finish within a grace period and gives the rest back. Signal handling is left
to the caller (`asyncflow worker` does it).

Worker is a facade over parts with one job each, in asyncflow._sdk: the
StreamRunner or the Poller brings tasks in, the Scheduler queues and runs them,
the LeaseKeeper renews their leases, the Reporter delivers their reports; one
set of them per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import Callable, Mapping

from asyncflow._sdk.channel import (
    ChannelSettings,
    Route,
    aio_works_here,
    grpc_target,
    open_aio,
    replica_count,
    stream_targets,
)
from asyncflow._sdk.job import Done, Handler, Job, NonRetryable, RetryLater, RunNext
from asyncflow._sdk.leases import LeaseKeeper
from asyncflow._sdk.polling import Poller
from asyncflow._sdk.reporter import Reporter
from asyncflow._sdk.scheduler import Origin, Scheduler
from asyncflow._sdk.streaming import StreamRunner
from asyncflow._sdk.transport import Transport
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

__all__ = [
    "ChannelSettings", "Done", "Handler", "Job", "NonRetryable", "RetryLater", "RunNext", "Worker",
]  # fmt: skip


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
        streams: int | None = None,
        settings: ChannelSettings | None = None,
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
        self.streams = streams
        """WorkTasks streams to open (None: one per replica of an address list, else
        one); `concurrency` and `prefetch` are shared out among them."""
        self.settings = settings or ChannelSettings()
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self._stopping = asyncio.Event()
        self._grace = 30.0
        self._runner: asyncio.Task[None] | None = None
        self._schedulers: list[Scheduler] = []

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
        return sum(scheduler.completed for scheduler in self._schedulers)

    async def __aenter__(self) -> Worker:
        self._runner = asyncio.create_task(self.run(), name="asyncflow-worker")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Work until stop() is called (or a subscription is refused as invalid)."""
        if not self._handlers:
            raise ValueError("no handlers registered")
        if not aio_works_here():
            raise RuntimeError(
                "this process was forked from one that used grpc.aio, which cannot work"
                " here: run workers in processes started afresh (spawn), not forked"
            )
        target = await asyncio.to_thread(grpc_target, self.address)  # a list's names: looked up
        shares = self._shares()
        spread = stream_targets(target, len(shares), first=random.randrange(1 << 16))
        channels = (
            [open_aio(one, Route.STREAM, self.settings) for one in spread]
            if spread is not None and self.stream
            else [open_aio(target, Route.WORKER, self.settings)]
        )
        parts = [
            asyncio.create_task(self._run_part(channels[i % len(channels)][1], *share))
            for i, share in enumerate(shares)
        ]
        try:
            await asyncio.wait(parts, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            self._stop_parts()  # one part was refused as invalid: the others stop too
            await asyncio.gather(*parts, return_exceptions=True)
            for channel, _ in channels:
                await channel.close()
        for part in parts:
            part.result()

    def _shares(self) -> list[tuple[int, int]]:
        """(concurrency, prefetch) of each stream: as even as can be, each with a slot."""
        if not self.stream:
            return [(self.concurrency, 0)]
        wanted = self.streams if self.streams is not None else replica_count(self.address)
        count = max(1, min(wanted, self.concurrency))
        return [
            (self.concurrency // count + (i < self.concurrency % count),
             self.prefetch // count + (i < self.prefetch % count))
            for i in range(count)
        ]  # fmt: skip

    async def _run_part(self, stub: pb_grpc.TaskServiceAsyncStub, concurrency: int,
                        prefetch: int) -> None:  # fmt: skip
        """One stream (or the poller) with its own scheduler, leases and reports."""
        transport = Transport(stub)
        streams: StreamRunner | None = None

        def lease_lost(task_id: str) -> None:
            scheduler.lease_lost(task_id)

        def slot_freed(origin: Origin | None) -> None:
            if streams is not None:
                streams.task_finished(origin)

        leases = LeaseKeeper(transport, on_lost=lease_lost)
        reporter = Reporter(transport, leases)
        scheduler = Scheduler(self._handlers, concurrency, leases, reporter, slot_freed)
        self._schedulers.append(scheduler)
        if self._stopping.is_set():
            scheduler.close()
        try:
            if self.stream:
                streams = StreamRunner(
                    transport,
                    scheduler,
                    leases,
                    task_types=self.task_types,
                    prefetch=prefetch,
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

    def _stop_parts(self) -> None:
        self._stopping.set()
        for scheduler in self._schedulers:
            scheduler.close()

    async def stop(self, grace: float = 30.0) -> None:
        """Stop taking tasks, give running stages `grace` seconds, then release the rest.

        Idempotent; returns once the worker has stopped. Reports the server
        cannot take yet are still re-sent until their lease deadline, so a stop
        during a server outage may take up to a lease length longer."""
        self._grace = grace
        self._stop_parts()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._runner)
