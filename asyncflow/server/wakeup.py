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
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from asyncflow.clock import Clock

log = logging.getLogger(__name__)

MAX_TIMERS = 10_000
"""Pending back-off timers per process; beyond that the fallback poll covers."""


class Waiter(Protocol):
    """A stream with room for more tasks."""

    @property
    def key(self) -> str: ...

    def wake(self) -> None: ...


class WakeRelay(Protocol):
    async def publish(self, task_type: str, count: int) -> None: ...

    async def close(self) -> None: ...


class WakeHub:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._waiting: dict[str, OrderedDict[str, Waiter]] = {}
        self._timers: dict[tuple[str, int], asyncio.TimerHandle] = {}
        self._timer_counts: dict[tuple[str, int], int] = {}
        self.relay: WakeRelay | None = None
        self._publishing: set[asyncio.Task[None]] = set()

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
        if self.relay is not None:
            publishing = asyncio.ensure_future(self.relay.publish(task_type, count))
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
        if self.relay is not None:
            await self.relay.close()


class RedisWakeRelay:
    """Carries wake-ups between replicas on one pub/sub channel.

    Messages are "<replica>|<task_type>|<count>"; a replica ignores its own.
    """

    def __init__(self, redis: aioredis.Redis, channel: str, hub: WakeHub) -> None:
        self._redis = redis
        self._channel = channel
        self._hub = hub
        self._me = uuid.uuid4().hex
        self._pubsub = self._redis.pubsub()
        self._listener: asyncio.Task[None] | None = None
        self._warned = False

    def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="asyncflow-wake-relay")

    async def publish(self, task_type: str, count: int) -> None:
        try:
            await self._redis.publish(self._channel, f"{self._me}|{task_type}|{count}")
        except (RedisError, OSError) as exc:
            if not self._warned:
                self._warned = True
                log.warning("wake-up relay unavailable, other replicas will poll: %s", exc)

    async def _listen(self) -> None:
        while True:
            try:
                await self._pubsub.subscribe(self._channel)
                async for message in self._pubsub.listen():
                    if message.get("type") == "message":
                        self._deliver(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("wake-up relay lost its subscription, retrying: %s", exc)
                await asyncio.sleep(1.0)

    def _deliver(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        sender, _, rest = text.partition("|")
        task_type, _, count = rest.partition("|")
        if sender != self._me and count.isdigit():
            self._hub.wake(task_type, int(count))

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._redis.aclose()
