"""Text messages between the replicas that share a Redis, on one pub/sub channel.

A replica hears every other replica's messages and ignores its own. Delivery is
best effort: a replica that is not subscribed at that moment (Redis down, a
reconnect) misses the message, so what travels here must only ever speed
things up, with another way to reach the same end (asyncflow.server.cancels:
a worker also learns of a cancel when it renews the lease).
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

RESUBSCRIBE_SECONDS = 1.0


class RedisRelay:
    def __init__(self, url: str, channel: str) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=1.0)
        self._channel = channel
        self._me = uuid.uuid4().hex
        self._pubsub = self._redis.pubsub()
        self._listener: asyncio.Task[None] | None = None
        self._warned = False

    def start(self, deliver: Callable[[str], object]) -> None:
        """Listen; hand each other replica's message to `deliver`."""
        self._listener = asyncio.create_task(self._listen(deliver), name=f"relay-{self._channel}")

    async def publish(self, text: str) -> None:
        try:
            await self._redis.publish(self._channel, f"{self._me}|{text}")
        except (RedisError, OSError) as exc:
            if not self._warned:
                self._warned = True
                log.warning("relay %s unavailable, other replicas miss it: %s", self._channel, exc)

    async def _listen(self, deliver: Callable[[str], object]) -> None:
        while True:
            try:
                await self._pubsub.subscribe(self._channel)
                async for message in self._pubsub.listen():
                    if message.get("type") == "message":
                        data = message["data"]
                        text = data.decode() if isinstance(data, bytes) else data
                        sender, _, body = text.partition("|")
                        if sender != self._me:
                            deliver(body)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("relay %s lost its subscription, retrying: %s", self._channel, exc)
                await asyncio.sleep(RESUBSCRIBE_SECONDS)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._redis.aclose()
