"""Leader locks on the real Redis (and the local one): token, TTL, watchdog."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from conftest import REDIS_URL
from waiting import eventually

from asyncflow.lock import LocalLock, LockBackend, RedisLock, run_exclusive

TTL = 1.0  # renewals every TTL / 3: room for a loaded machine's event-loop stalls


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
async def locks(request: pytest.FixtureRequest) -> AsyncIterator[LockBackend]:
    backend: LockBackend = (
        LocalLock() if request.param == "local" else RedisLock.from_url(REDIS_URL)
    )
    yield backend
    await backend.close()


@pytest.fixture
def key(redis_prefix: str) -> str:
    return redis_prefix + "lock:test"


async def test_only_one_holder(locks: LockBackend, key: str) -> None:
    assert await locks.acquire(key, "a", 5)
    assert not await locks.acquire(key, "b", 5)
    assert await locks.owner(key) == "a"


async def test_release_checks_the_token(locks: LockBackend, key: str) -> None:
    assert await locks.acquire(key, "a", 5)
    assert not await locks.release(key, "b")
    assert await locks.owner(key) == "a"
    assert not await locks.renew(key, "b", 5)
    assert await locks.release(key, "a")
    assert await locks.owner(key) is None
    assert await locks.acquire(key, "b", 5)


async def test_expiry_frees_a_lock_nobody_renews(locks: LockBackend, key: str) -> None:
    assert await locks.acquire(key, "dead", TTL)

    async def taken_by_b() -> bool:
        return await locks.acquire(key, "b", 5)

    await eventually(taken_by_b, within=5, what="expiry")
    assert not await locks.release(key, "dead")  # the late holder cannot free b's lock
    assert await locks.owner(key) == "b"


async def test_watchdog_keeps_the_lock_while_work_runs_past_the_ttl(
    locks: LockBackend, key: str
) -> None:
    finish = asyncio.Event()
    started = asyncio.Event()

    async def long_work() -> None:
        started.set()
        await finish.wait()

    run = asyncio.create_task(run_exclusive(locks, key, TTL, "me", long_work))
    await started.wait()
    deadline = time.monotonic() + 4 * TTL  # several TTLs: only renewals keep it
    while time.monotonic() < deadline:
        owner = await locks.owner(key)
        assert owner is not None
        assert owner.startswith("me:")
        assert not await locks.acquire(key, "other", 5)
        await asyncio.sleep(TTL / 5)
    finish.set()
    assert await run is True
    assert await locks.owner(key) is None  # released at the end


async def test_busy_lock_skips_the_work(locks: LockBackend, key: str) -> None:
    assert await locks.acquire(key, "other", 5)
    ran = []

    async def work() -> None:
        ran.append(True)

    assert await run_exclusive(locks, key, TTL, "me", work) is False
    assert ran == []


async def test_lost_lock_cancels_the_work(locks: LockBackend, key: str, redis_prefix: str) -> None:
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    run = asyncio.create_task(run_exclusive(locks, key, TTL, "me", work))
    await started.wait()
    # Someone else now owns the key (our lock expired and was taken over).
    if isinstance(locks, LocalLock):
        locks._held[key] = ("thief", time.monotonic() + 60)
    else:
        client = aioredis.Redis.from_url(REDIS_URL)
        await client.set(key, "thief", px=60_000)
        await client.aclose()
    await asyncio.wait_for(cancelled.wait(), timeout=5)
    await run
    assert await locks.owner(key) == "thief"  # not released by the loser
