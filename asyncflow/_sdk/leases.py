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
    group: _Group = field(repr=False)


@dataclass
class _Group:
    """Leases that arrived together (one pushed batch: one claim, one deadline),
    renewed by one task: a task per lease was a task, a timer and a
    cancellation for every task a worker runs."""

    members: set[str] = field(default_factory=set)
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
        self.keep_all([task])

    def keep_all(self, tasks: list[pb.Task]) -> None:
        """keep() each of `tasks` (held together), with one renewal task for them."""
        fresh = {t.task_id: t for t in tasks if t.task_id not in self._leases}
        if not fresh:
            return
        group = _Group(set(fresh))
        for task_id, task in fresh.items():
            self._leases[task_id] = _Lease(task_id, task.lease.token, task.lease.deadline, group)
        earliest = min(task.lease.deadline for task in fresh.values())
        interval = max(MIN_INTERVAL, (earliest - self._clock()) / 3)
        group.renewing = asyncio.create_task(self._renew(group, interval))

    def release(self, task_id: str) -> None:
        """Stop renewing: the task was reported, given back, or dropped."""
        lease = self._leases.pop(task_id, None)
        if lease is None:
            return
        group = lease.group
        group.members.discard(task_id)
        if not group.members and group.renewing is not None:
            group.renewing.cancel()

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
            log.warning("lease of %s was lost (the task was recovered or cancelled)", task_id)
            self._on_lost(task_id)

    def close(self) -> None:
        for task_id in list(self._leases):
            self.release(task_id)

    async def _renew(self, group: _Group, interval: float) -> None:
        while group.members:
            await self._sleep(interval)
            stream = self._transport.open_stream()
            held = [self._leases[task_id] for task_id in sorted(group.members)]
            if stream is not None:
                for lease in held:
                    stream.extend(lease.task_id, lease.token)  # answered through renewed/lost
            else:  # by ExtendLease, together: one slow answer delays no other
                await asyncio.gather(*(self._extend(lease) for lease in held))

    async def _extend(self, lease: _Lease) -> None:
        try:
            deadline = await self._transport.extend_lease(lease.task_id, lease.token)
        except (FailedPrecondition, NotFound):
            self.lost(lease.task_id)
            return
        except AsyncflowError as error:
            log.warning("lease renewal for %s failed: %s", lease.task_id, error)
            return
        self.renewed(lease.task_id, deadline)
