"""Text messages between the replicas that share a Redis, on one pub/sub channel.

A replica hears every other replica's messages and ignores its own (each is
sent as "<replica>|<text>"). Delivery is best effort: a replica that is not
subscribed at that moment (Redis down, a reconnect) misses the message, so
what travels here must only ever speed things up, with another way to reach
the same end (the wake-up relay: each stream's fallback poll; cancel notices:
a worker learns of a cancel when it renews the lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

CLOSE_WAIT = 1.0
"""Seconds close() gives the subscription to end on its own before closing it."""
RESUBSCRIBE_SECONDS = 1.0


class RedisRelay:
    def __init__(self, redis: aioredis.Redis, channel: str, what: str) -> None:
        self._redis = redis
        self._channel = channel
        self._what = what
        """What the relay carries, for log lines ("wake-up relay")."""
        self._me = uuid.uuid4().hex
        self._pubsub = self._redis.pubsub()
        self._listener: asyncio.Task[None] | None = None
        self._warned = False
        self._closing = False

    def start(self, deliver: Callable[[str], object]) -> None:
        """Listen; hand each other replica's message to `deliver`."""
        self._listener = asyncio.create_task(
            self._listen(deliver), name=f"asyncflow-{self._channel}"
        )

    async def publish(self, text: str) -> None:
        try:
            await self._redis.publish(self._channel, f"{self._me}|{text}")
        except (RedisError, OSError) as exc:
            if not self._warned:
                self._warned = True
                log.warning("%s unavailable, other replicas miss it: %s", self._what, exc)

    async def _listen(self, deliver: Callable[[str], object]) -> None:
        while not self._closing:
            try:
                await self._pubsub.subscribe(self._channel)
                async for message in self._pubsub.listen():
                    if message.get("type") == "message":
                        data = message["data"]
                        sender, _, text = (data.decode() if isinstance(data, bytes) else data
                                           ).partition("|")  # fmt: skip
                        if sender != self._me:
                            deliver(text)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("%s lost its subscription, retrying: %s", self._what, exc)
                await asyncio.sleep(RESUBSCRIBE_SECONDS)

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
