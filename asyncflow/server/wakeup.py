"""Wake-ups for streaming dispatch: push tasks as soon as they are due.

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
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from asyncflow.core.ports import Clock

log = logging.getLogger(__name__)

MAX_TIMERS = 10_000
"""Pending back-off timers per process; beyond that the fallback poll covers."""
CLOSE_WAIT = 1.0
"""Seconds close() gives the subscription to end on its own before closing it."""


class Waiter(Protocol):
    """A stream with room for more tasks."""

    @property
    def key(self) -> str: ...

    def wake(self) -> None: ...


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

    def __init__(self, clock: Clock, relay: WakeRelay | None = None) -> None:
        self._clock = clock
        self._relay = relay
        self._waiting: dict[str, OrderedDict[str, Waiter]] = {}
        self._timers: dict[tuple[str, int], asyncio.TimerHandle] = {}
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

    def forget(self, waiter: Waiter) -> None:
        for waiting in self._waiting.values():
            waiting.pop(waiter.key, None)

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
        delay = when - self._clock.now()
        if delay > 0:
            self._later(task_type, when, count, delay)
            return
        self.wake(task_type, count)
        if self._relay is not None:
            publishing = asyncio.ensure_future(self._relay.publish(task_type, count))
            self._publishing.add(publishing)
            publishing.add_done_callback(self._publishing.discard)

    def _later(self, task_type: str, when: int, count: int, delay: int) -> None:
        key = (task_type, when)
        if key in self._timers:
            self._timer_counts[key] += count
            return
        if len(self._timers) >= MAX_TIMERS:
            return
        self._timer_counts[key] = count
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def _fire(self, key: tuple[str, int]) -> None:
        self._timers.pop(key, None)
        count = self._timer_counts.pop(key, 0)
        self.tasks_due(key[0], self._clock.now(), count)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)
        if self._relay is not None:
            await self._relay.close()


class RedisWakeRelay:
    """Carries wake-ups between replicas on one pub/sub channel.

    Messages are "<replica>|<task_type>|<count>"; a replica ignores its own.
    """

    def __init__(self, url: str, channel: str) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=1.0)
        self._channel = channel
        self._me = uuid.uuid4().hex
        self._pubsub = self._redis.pubsub()
        self._listener: asyncio.Task[None] | None = None
        self._warned = False
        self._closing = False

    def start(self, deliver: Deliver) -> None:
        self._listener = asyncio.create_task(self._listen(deliver), name="asyncflow-wake-relay")

    async def publish(self, task_type: str, count: int) -> None:
        try:
            await self._redis.publish(self._channel, f"{self._me}|{task_type}|{count}")
        except (RedisError, OSError) as exc:
            if not self._warned:
                self._warned = True
                log.warning("wake-up relay unavailable, other replicas will poll: %s", exc)

    async def _listen(self, deliver: Deliver) -> None:
        while not self._closing:
            try:
                await self._pubsub.subscribe(self._channel)
                async for message in self._pubsub.listen():
                    if message.get("type") == "message":
                        self._receive(message["data"], deliver)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("wake-up relay lost its subscription, retrying: %s", exc)
                await asyncio.sleep(1.0)

    def _receive(self, data: bytes | str, deliver: Deliver) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        sender, _, rest = text.partition("|")
        task_type, _, count = rest.partition("|")
        if sender != self._me and count.isdigit():
            deliver(task_type, int(count))

    async def close(self) -> None:
        self._closing = True
        if self._listener is not None:
            self._listener.cancel()
            # redis-py's listen() can swallow a cancel (seen as a stop that never
            # ended): then closing the subscription ends its read, and the flag
            # ends the loop.
            await asyncio.wait({self._listener}, timeout=CLOSE_WAIT)
            if not self._listener.done():
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._redis.aclose()
