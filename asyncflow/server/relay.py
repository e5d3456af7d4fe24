"""Messages between the replicas that share a Redis: one pub/sub subscription per
server process, for every channel it relays (wake-ups, cancel notices).

One subscription holds one connection of the shared, bounded Redis pool for as
long as the server runs, so the channels share it rather than take one each.
A replica hears every other replica's messages and ignores its own (each is
sent as "<replica>|<text>"). Delivery is best effort: a replica that is not
subscribed at that moment (Redis down, a reconnect) misses the message, so
what travels here must only ever speed things up, with another way to reach
the same end (wake-ups: each stream's fallback poll; cancel notices: a worker
learns of a cancel when it renews the lease).
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

Deliver = Callable[[str], object]


class RedisRelay:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._me = uuid.uuid4().hex
        self._pubsub = self._redis.pubsub()
        self._channels: dict[str, Deliver] = {}
        self._listener: asyncio.Task[None] | None = None
        self._warned: set[str] = set()
        self._closing = False

    def listen(self, channel: str, deliver: Deliver) -> None:
        """Hand each other replica's message on `channel` to `deliver` (before start)."""
        self._channels[channel] = deliver

    def start(self) -> None:
        """Subscribe to every channel listened to (needs a running event loop)."""
        if self._channels:
            self._listener = asyncio.create_task(self._listen(), name="asyncflow-relay")

    async def publish(self, channel: str, text: str) -> None:
        try:
            await self._redis.publish(channel, f"{self._me}|{text}")
        except (RedisError, OSError) as exc:
            if channel not in self._warned:
                self._warned.add(channel)
                log.warning("relay %s unavailable, other replicas miss it: %s", channel, exc)

    async def _listen(self) -> None:
        while not self._closing:
            try:
                await self._pubsub.subscribe(*self._channels)
                async for message in self._pubsub.listen():
                    if message.get("type") == "message":
                        self._receive(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("relay lost its subscription, retrying: %s", exc)
                await asyncio.sleep(RESUBSCRIBE_SECONDS)

    def _receive(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        text = data.decode() if isinstance(data, bytes) else data
        sender, _, body = text.partition("|")
        deliver = self._channels.get(name)
        if sender != self._me and deliver is not None:
            deliver(body)

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
