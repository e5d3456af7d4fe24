"""A relay's close (RedisRelay: wake-ups and cancel notices) ends even when the
subscription swallows the cancel.

redis-py's PubSub.listen() was seen to swallow a cancel that landed in its
read, so a server's stop waited forever on the relay's listener. The fake
subscription below does exactly that: it only ends when it is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from asyncflow.server.relay import RedisRelay


class StubbornPubSub:
    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.listening = asyncio.Event()

    async def subscribe(self, *channels: str) -> None:
        return None

    async def listen(self) -> AsyncIterator[dict[str, object]]:
        self.listening.set()
        while not self.closed.is_set():
            try:
                await self.closed.wait()
            except asyncio.CancelledError:
                continue  # swallowed, as redis-py did
        return
        yield {}  # an async generator

    async def aclose(self) -> None:
        self.closed.set()


async def test_close_ends_a_listener_that_swallows_its_cancel() -> None:
    relay = RedisRelay(aioredis.Redis.from_url("redis://127.0.0.1:1/0"))  # never connects
    stubborn = StubbornPubSub()
    relay._pubsub = stubborn  # type: ignore[assignment]
    relay.listen("wake", lambda text: None)
    relay.start()
    await stubborn.listening.wait()
    await asyncio.wait_for(relay.close(), timeout=10)
    assert relay._listener is not None
    assert relay._listener.done()
