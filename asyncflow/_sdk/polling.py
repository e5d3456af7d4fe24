"""The poller: holds tasks with unary HoldTasks calls (Worker(stream=False))."""

from __future__ import annotations

import asyncio
import logging

from asyncflow._sdk.scheduler import Scheduler
from asyncflow._sdk.transport import Transport
from asyncflow._sdk.waits import wait_either
from asyncflow.errors import AsyncflowError, InvalidArgument

log = logging.getLogger("asyncflow.worker")


class Poller:
    """While there is room, holds as many due tasks as there are free slots, type
    after type, and hands them to the scheduler; when nothing was due (or no slot
    is free) it waits `poll_interval` seconds, or less if a slot comes free."""

    def __init__(
        self,
        transport: Transport,
        scheduler: Scheduler,
        *,
        task_types: list[str],
        poll_interval: float,
        stopping: asyncio.Event,
    ) -> None:
        self._transport = transport
        self._scheduler = scheduler
        self._task_types = task_types
        self._poll_interval = poll_interval
        self._stopping = stopping

    async def run(self) -> None:
        """Until the worker stops; a hold refused as invalid raises."""
        while not self._stopping.is_set():
            held = 0
            for task_type in self._task_types:
                if self._scheduler.room < 1:
                    break
                try:
                    tasks = await self._transport.hold_tasks(task_type, self._scheduler.room)
                except InvalidArgument:
                    raise
                except AsyncflowError as error:
                    log.warning("hold failed (%s); polling again later", error)
                    break
                self._scheduler.accept(tasks, None)
                held += len(tasks)
            if held == 0 or self._scheduler.room < 1:
                self._scheduler.slot_freed.clear()
                await wait_either(self._scheduler.slot_freed, self._stopping, self._poll_interval)
