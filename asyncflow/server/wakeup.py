"""Wake-ups for streaming dispatch: push tasks as soon as they are due.

A stream that waits with room can also be handed a task by a create on this
replica (WakeHub.offer, the core's HandOff): the create commits the task
already leased to it, and it is pushed right after, with no wake-up at all.

The core reports every task that becomes due (created, re-queued for a next
stage or a retry, recovered, released). Due now: the hub wakes up to `count`
streams waiting on that type, in arrival order, and the relay tells the other
replicas through Redis pub/sub. Due later (a back-off): a timer fires then.
Streams that are not waiting (busy, or full) are not woken: they look again
as soon as they have room. Missed wake-ups are covered by each stream's
fallback poll at the type's schedule interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from asyncflow.clock import Alarm, AlarmClock
from asyncflow.core.ports import Taker
from asyncflow.server.relay import RedisRelay

log = logging.getLogger(__name__)

MAX_TIMERS = 10_000
"""Pending back-off timers per process; beyond that the fallback poll covers."""


class Waiter(Protocol):
    """A stream with room for more tasks."""

    @property
    def key(self) -> str: ...

    def wake(self) -> None: ...

    def slot(self) -> Taker | None:
        """Reserve one free slot for a task handed off by a create (None: full)."""
        ...


Deliver = Callable[[str, int], object]
"""Where a relay hands the wake-ups of other replicas: (task_type, count)."""


class WakeRelay(Protocol):
    """Carries wake-ups to and from the other replicas."""

    def start(self, deliver: Deliver) -> None:
        """Begin listening; hand every other replica's wake-up to `deliver`."""
        ...

    async def publish(self, task_type: str, count: int) -> None: ...

    async def close(self) -> None: ...


class WakeHub:
    """The core's DueListener: wakes this replica's waiting streams, tells the others."""

    def __init__(self, clock: AlarmClock, relay: WakeRelay | None = None) -> None:
        self._clock = clock
        self._relay = relay
        self._waiting: dict[str, OrderedDict[str, Waiter]] = {}
        self._timers: dict[tuple[str, int], Alarm] = {}
        self._timer_counts: dict[tuple[str, int], int] = {}
        self._publishing: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Take the other replicas' wake-ups (needs a running event loop)."""
        if self._relay is not None:
            self._relay.start(self.wake)

    # -- waiters ----------------------------------------------------------------

    def want(self, waiter: Waiter, task_types: list[str]) -> None:
        """`waiter` has room: wake it when one of these types has due tasks."""
        for task_type in task_types:
            self._waiting.setdefault(task_type, OrderedDict())[waiter.key] = waiter

    def waiting(self, task_type: str) -> int:
        """Streams waiting on the type now."""
        return len(self._waiting.get(task_type, ()))

    def forget(self, waiter: Waiter) -> None:
        for waiting in self._waiting.values():
            waiting.pop(waiter.key, None)

    def offer(self, task_type: str, count: int) -> list[Taker]:
        """The core's HandOff: up to `count` slots of streams waiting on the type,
        longest waiting first; a stream that got one goes to the back of the line,
        so that one create after another spread over the waiting streams."""
        takers: list[Taker] = []
        waiting = self._waiting.get(task_type)
        if not waiting:
            return takers
        for key, waiter in list(waiting.items()):
            while len(takers) < count and (taker := waiter.slot()) is not None:
                takers.append(taker)
                waiting.move_to_end(key)
            if len(takers) == count:
                break
        return takers

    def wake(self, task_type: str, count: int) -> int:
        """Wake up to `count` waiters of `task_type`, longest waiting first."""
        waiting = self._waiting.get(task_type)
        woken = 0
        while waiting and woken < count:
            _, waiter = waiting.popitem(last=False)
            self.forget(waiter)
            waiter.wake()
            woken += 1
        return woken

    # -- the core's DueListener -------------------------------------------------

    def tasks_due(self, task_type: str, when: int, count: int) -> None:
        if when > self._clock.now():
            self._later(task_type, when, count)
            return
        self.wake(task_type, count)
        if self._relay is not None:
            publishing = asyncio.ensure_future(self._relay.publish(task_type, count))
            self._publishing.add(publishing)
            publishing.add_done_callback(self._publishing.discard)

    def _later(self, task_type: str, when: int, count: int) -> None:
        key = (task_type, when)
        if key in self._timers:
            self._timer_counts[key] += count
            return
        if len(self._timers) >= MAX_TIMERS:
            return
        self._timer_counts[key] = count
        # The clock's alarm: a delayed task or a back-off comes due when the server's
        # clock says so (a test's manual clock included), with no polling.
        self._timers[key] = self._clock.call_at(when, lambda: self._fire(key))

    def _fire(self, key: tuple[str, int]) -> None:
        self._timers.pop(key, None)
        count = self._timer_counts.pop(key, 0)
        self.tasks_due(*key, count)  # an alarm a hair early is set again

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)
        if self._relay is not None:
            await self._relay.close()


class RedisWakeRelay:
    """Carries wake-ups between replicas as "<task_type>|<count>" messages on one
    channel of the server's RedisRelay (which its owner starts and closes)."""

    def __init__(self, relay: RedisRelay, channel: str) -> None:
        self._relay = relay
        self._channel = channel

    def start(self, deliver: Deliver) -> None:
        self._relay.listen(self._channel, lambda text: _woken(text, deliver))

    async def publish(self, task_type: str, count: int) -> None:
        await self._relay.publish(self._channel, f"{task_type}|{count}")

    async def close(self) -> None:
        return None  # the relay is shared: closed by the server


def _woken(text: str, deliver: Deliver) -> None:
    task_type, _, count = text.partition("|")
    if count.isdigit():
        deliver(task_type, int(count))
