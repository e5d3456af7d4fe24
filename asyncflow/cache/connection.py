"""The Redis connections of one server process.

One bounded pool is shared by the task cache, the governance locks and the
wake-up relay. Bounded and blocking: when every connection is busy, a caller
waits for one (up to `redis_wait_seconds`) instead of failing at once, which
is what redis-py's default pool does beyond 100 connections ("Too many
connections"). No hidden retries either: a failed command fails once, and the
cache's circuit breaker decides what to do next.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from asyncflow.config import CacheConfig

ConnectCheck = Callable[[AbstractConnection], Awaitable[None]]


class SharedPool(BlockingConnectionPool):
    """A BlockingConnectionPool that runs `checks` on every (re)connected
    connection before it carries a command."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checks: list[ConnectCheck] = []

    def make_connection(self) -> AbstractConnection:
        connection: AbstractConnection = super().make_connection()  # type: ignore[no-untyped-call]
        connection.register_connect_callback(self._connected)  # type: ignore[no-untyped-call]
        return connection

    async def _connected(self, connection: AbstractConnection) -> None:
        for check in self.checks:
            await check(connection)


def open_pool(config: CacheConfig) -> SharedPool:
    pool: SharedPool = SharedPool.from_url(
        config.redis_url,
        max_connections=config.redis_max_connections,
        timeout=config.redis_wait_seconds,
        socket_timeout=config.redis_timeout_seconds,
        socket_connect_timeout=config.redis_timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
    )
    return pool


def client(pool: SharedPool) -> aioredis.Redis:
    """A client on the shared pool; closing it leaves the pool open."""
    return aioredis.Redis(connection_pool=pool)
