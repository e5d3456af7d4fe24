"""The lease keeper: renews the leases of the tasks a worker holds."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from asyncflow._sdk.transport import Transport
from asyncflow.errors import AsyncflowError, FailedPrecondition, NotFound
from asyncflow.v1 import task_service_pb2 as pb

log = logging.getLogger("asyncflow.worker")

MIN_INTERVAL = 1.0
"""Seconds between renewals of a very short lease."""


@dataclass
class _Lease:
    task_id: str
    token: str
    deadline: int
    """Unix seconds; the latest the server has told us."""
    renewing: asyncio.Task[None] | None = field(default=None, repr=False)


class LeaseKeeper:
    """Keeps each held task's lease from its arrival (prefetched tasks too) until its
    report is settled, renewing it every third of its length: on the open stream,
    else by ExtendLease. When the server says a lease is gone (the task was
    recovered), it stops and tells `on_lost`, so the stage can be abandoned."""

    def __init__(
        self,
        transport: Transport,
        on_lost: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._transport = transport
        self._on_lost = on_lost
        self._clock = clock
        self._sleep = sleep
        self._leases: dict[str, _Lease] = {}

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._leases

    def keep(self, task: pb.Task) -> None:
        """Start renewing `task`'s lease (no-op if it is already kept)."""
        if task.task_id in self._leases:
            return
        lease = _Lease(task.task_id, task.lease.token, task.lease.deadline)
        interval = max(MIN_INTERVAL, (lease.deadline - self._clock()) / 3)
        lease.renewing = asyncio.create_task(self._renew(lease, interval))
        self._leases[task.task_id] = lease

    def release(self, task_id: str) -> None:
        """Stop renewing: the task was reported, given back, or dropped."""
        lease = self._leases.pop(task_id, None)
        if lease is not None and lease.renewing is not None:
            lease.renewing.cancel()

    def deadline(self, task_id: str) -> int | None:
        """The lease's deadline as last renewed (None if not kept)."""
        lease = self._leases.get(task_id)
        return lease.deadline if lease is not None else None

    def renewed(self, task_id: str, deadline: int) -> None:
        lease = self._leases.get(task_id)
        if lease is not None:
            lease.deadline = max(lease.deadline, deadline)

    def lost(self, task_id: str) -> None:
        if task_id in self._leases:
            self.release(task_id)
            log.warning("lease of %s was lost (the task was recovered)", task_id)
            self._on_lost(task_id)

    def close(self) -> None:
        for task_id in list(self._leases):
            self.release(task_id)

    async def _renew(self, lease: _Lease, interval: float) -> None:
        while True:
            await self._sleep(interval)
            stream = self._transport.open_stream()
            if stream is not None:
                stream.extend(lease.task_id, lease.token)  # answered through renewed/lost
                continue
            try:
                deadline = await self._transport.extend_lease(lease.task_id, lease.token)
            except (FailedPrecondition, NotFound):
                self.lost(lease.task_id)
                return
            except AsyncflowError as error:
                log.warning("lease renewal for %s failed: %s", lease.task_id, error)
                continue
            self.renewed(lease.task_id, deadline)
