"""The stream runner: keeps a WorkTasks stream open while the worker runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc

from asyncflow._sdk.errors import from_rpc_error
from asyncflow._sdk.leases import LeaseKeeper
from asyncflow._sdk.scheduler import Origin, Scheduler
from asyncflow._sdk.stream import StreamConnection
from asyncflow._sdk.transport import Transport
from asyncflow._sdk.waits import Backoff, sleep_unless, wait_either
from asyncflow.errors import InvalidArgument
from asyncflow.v1 import task_service_pb2 as pb

log = logging.getLogger("asyncflow.worker")

ACK_WAIT = 5.0
"""On stop, how long to wait for the server to answer the last reports on the stream."""


class StreamRunner:
    """Subscribes with the free slots (plus prefetch) as the window, hands pushed
    tasks to the scheduler, and reconnects with back-off whenever the stream
    ends, until the worker stops. On stop it closes the window, lets the worker
    drain, and waits for the last answers before half-closing.

    It is the streams' listener: renewal answers go to the lease keeper.
    """

    def __init__(
        self,
        transport: Transport,
        scheduler: Scheduler,
        leases: LeaseKeeper,
        *,
        task_types: list[str],
        prefetch: int,
        worker_id: str,
        stopping: asyncio.Event,
        drain: Callable[[], Awaitable[None]],
    ) -> None:
        self._transport = transport
        self._scheduler = scheduler
        self._leases = leases
        self._task_types = task_types
        self._prefetch = prefetch
        self._worker_id = worker_id
        self._stopping = stopping
        self._drain = drain

    async def run(self) -> None:
        """Until the worker stops; a subscription refused as invalid raises."""
        backoff = Backoff()
        while not self._stopping.is_set():
            while self._scheduler.room < 1 and not self._stopping.is_set():
                self._scheduler.slot_freed.clear()
                await wait_either(self._scheduler.slot_freed, self._stopping)
            if self._stopping.is_set():
                break
            try:
                await self._connect()
                backoff.reset()  # the server ended the stream: reconnect at once
            except grpc.aio.AioRpcError as error:
                failure = from_rpc_error(error)
                if isinstance(failure, InvalidArgument):
                    raise failure from None  # a malformed subscription never gets better
                # Not registered yet (workers may start before producers), or gone.
                log.warning("stream ended (%s); reconnecting", failure)
            await sleep_unless(self._stopping, backoff.delay())

    async def _connect(self) -> None:
        connection = StreamConnection(self._transport.stub, self)
        self._transport.stream = connection
        window = self._scheduler.room + self._prefetch
        reading = asyncio.create_task(connection.run(self._task_types, window, self._worker_id))
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
        finally:
            stopping.cancel()
            self._transport.stream = None
            self._scheduler.forget(connection)

    def task_finished(self, origin: Origin | None) -> None:
        """A slot came free. For a task this stream did not push, the server does not
        count the slot: give the stream one more, up to its configured size."""
        current = self._transport.open_stream()
        if current is not None and origin is not current:
            most = self._scheduler.concurrency + self._prefetch
            current.set_window(min(most, current.window + 1))

    # -- StreamListener -------------------------------------------------------------

    def tasks_pushed(self, tasks: list[pb.Task], connection: StreamConnection) -> None:
        self._scheduler.accept(tasks, connection)

    def lease_renewed(self, task_id: str, deadline: int) -> None:
        self._leases.renewed(task_id, deadline)

    def lease_lost(self, task_id: str) -> None:
        self._leases.lost(task_id)
