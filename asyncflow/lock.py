"""Leader locks: at most one replica runs a given governance loop at a time.

A lock is a key holding the owner's unique token, with a TTL. While the work
runs, a watchdog renews the TTL every third of it (the "Redisson watchdog" of
the original design); release deletes the key only if it still holds our token,
so a holder can never release a lock that expired and was taken by another. A
replica that dies stops renewing, and its lock frees itself within the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class LockBackend(Protocol):
    async def acquire(self, key: str, token: str, ttl: float) -> bool:
        """Take the lock if free; never waits."""
        ...

    async def renew(self, key: str, token: str, ttl: float) -> bool:
        """Extend our lock; False if it is no longer ours."""
        ...

    async def release(self, key: str, token: str) -> bool:
        """Free our lock; False (and nothing deleted) if it is not ours."""
        ...

    async def owner(self, key: str) -> str | None: ...

    async def close(self) -> None: ...


RENEW_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLock:
    """Locks shared by every replica that uses the same Redis."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._renew = client.register_script(RENEW_IF_OWNER)
        self._release = client.register_script(RELEASE_IF_OWNER)

    @classmethod
    def from_url(cls, url: str) -> RedisLock:
        return cls(aioredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0))

    async def acquire(self, key: str, token: str, ttl: float) -> bool:
        try:
            return bool(await self._redis.set(key, token, nx=True, px=int(ttl * 1000)))
        except (RedisError, OSError) as exc:
            log.warning("lock %s: redis unavailable, not acquired: %s", key, exc)
            return False

    async def renew(self, key: str, token: str, ttl: float) -> bool:
        try:
            return bool(await self._renew(keys=[key], args=[token, int(ttl * 1000)]))
        except (RedisError, OSError) as exc:
            log.warning("lock %s: redis unavailable, renewal failed: %s", key, exc)
            return False

    async def release(self, key: str, token: str) -> bool:
        try:
            return bool(await self._release(keys=[key], args=[token]))
        except (RedisError, OSError) as exc:
            log.warning("lock %s: redis unavailable, left to expire: %s", key, exc)
            return False

    async def owner(self, key: str) -> str | None:
        value = await self._redis.get(key)
        return value.decode() if isinstance(value, bytes) else value

    async def close(self) -> None:
        await self._redis.aclose()


class LocalLock:
    """In-process locks for the embedded single-process default."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float]] = {}

    def _current(self, key: str) -> str | None:
        entry = self._held.get(key)
        if entry is None or entry[1] <= time.monotonic():
            self._held.pop(key, None)
            return None
        return entry[0]

    async def acquire(self, key: str, token: str, ttl: float) -> bool:
        if self._current(key) is not None:
            return False
        self._held[key] = (token, time.monotonic() + ttl)
        return True

    async def renew(self, key: str, token: str, ttl: float) -> bool:
        if self._current(key) != token:
            return False
        self._held[key] = (token, time.monotonic() + ttl)
        return True

    async def release(self, key: str, token: str) -> bool:
        if self._current(key) != token:
            return False
        del self._held[key]
        return True

    async def owner(self, key: str) -> str | None:
        return self._current(key)

    async def close(self) -> None:
        self._held.clear()


def raise_if_cancelled() -> None:
    """Raise CancelledError if this task was cancelled. redis-py (8.1) can return
    from a command normally although the task was cancelled while it ran: the
    cancellation is lost (the task's `cancelling()` count stays up), so a loop
    that calls Redis would run on and never let its stop() return."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def run_exclusive(
    backend: LockBackend,
    key: str,
    ttl: float,
    owner: str,
    work: Callable[[], Awaitable[object]],
) -> bool:
    """Run `work` under the lock `key` if it is free; False when another holds it.

    The TTL is renewed every ttl/3 while `work` runs; if a renewal fails the
    lock may already be someone else's, so `work` is cancelled.
    """
    token = f"{owner}:{uuid.uuid4().hex}"
    if not await backend.acquire(key, token, ttl):
        raise_if_cancelled()
        return False
    try:
        raise_if_cancelled()
    except asyncio.CancelledError:
        await backend.release(key, token)
        raise
    running = asyncio.ensure_future(work())
    try:
        while True:
            done, _ = await asyncio.wait({running}, timeout=ttl / 3)
            if done:
                running.result()  # re-raise the work's exception
                return True
            if not await backend.renew(key, token, ttl):
                log.warning("lock %s lost while its work ran; work cancelled", key)
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
                return True
    finally:
        if not running.done():
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        await backend.release(key, token)
