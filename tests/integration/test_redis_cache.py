"""The Redis task cache on a real Redis: codec versions, generations, leases.

Several caches on one key prefix play several replicas. A cache put behind a
stalled proxy plays a replica cut off from Redis while the others still reach
it. Nothing here sleeps: waits poll a condition (`eventually`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from conftest import REDIS_URL
from redis_tools import PrivateRedis, RedisProxy, open_cache
from waiting import eventually

from asyncflow.cache import codec
from asyncflow.cache.connection import SharedPool
from asyncflow.cache.redis import RedisTaskCache
from asyncflow.core.model import Task, TaskStatus
from asyncflow.core.service import DEFAULT_TYPE

pytestmark = pytest.mark.redis

TASK_ID = "k_lark_1"


def row(version: int, stage: str = "") -> Task:
    return Task(
        row_id=1, task_id=TASK_ID, task_type="lark", pos=1, user_id="",
        task_stage=stage or f"v{version}", status=TaskStatus.PENDING, priority=0,
        crt_retry_num=0, max_retry_num=0, retry=DEFAULT_TYPE.retry, context="",
        schedule_log="", order_time=0, lease_token="", hold_count=0, lease_deadline=0,
        version=version, create_time=0, modify_time=0,
    )  # fmt: skip


class Replicas:
    """Caches opened by a test, all closed at its end."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.opened: list[tuple[RedisTaskCache, SharedPool]] = []

    async def open(self, url: str = REDIS_URL, **settings: float) -> RedisTaskCache:
        cache, pool = await open_cache(url, self.prefix, **settings)
        self.opened.append((cache, pool))
        return cache

    async def close(self) -> None:
        for cache, pool in self.opened:
            await cache.close()
            await pool.disconnect()


@pytest.fixture
async def replicas(redis_prefix: str) -> AsyncIterator[Replicas]:
    opened = Replicas(redis_prefix)
    yield opened
    await opened.close()


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    """A plain client on the shared Redis, to look at or change keys directly."""
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def version_of(cache: RedisTaskCache) -> int | None:
    cached = await cache.get(TASK_ID)
    return None if cached is None else cached.version


# -- codec versions and undecodable payloads ---------------------------------------


async def test_each_codec_version_reads_only_its_own_payloads(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await replicas.open()
    monkeypatch.setattr(codec, "CODEC_VERSION", codec.CODEC_VERSION + 1)
    new = await replicas.open()  # a replica of the next release, mid rolling upgrade

    await new.put([row(5)], new.generation())
    assert await version_of(old) is None  # the new payload is never decoded by the old
    await old.fill([row(5)], old.generation())  # both renderings of version 5, side by side
    assert await version_of(old) == 5
    assert await version_of(new) == 5
    # A newer version written by either side replaces both renderings: the other
    # side misses (and reads the store), it never gets the older version.
    await old.put([row(6)], old.generation())
    assert await version_of(new) is None
    assert await version_of(old) == 6


async def test_an_undecodable_entry_reads_as_a_miss_logged_once_then_replaced(
    replicas: Replicas,
    redis_prefix: str,
    raw: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = await replicas.open()
    await cache.put([row(3)], cache.generation())
    # Same codec version, but not a Task of it (a field the code no longer has).
    key = f"{redis_prefix}cache1:task:{TASK_ID}"
    await raw.hset(key, f"c{codec.CODEC_VERSION}", codec.encode(row(3))[:-1] + ',"gone":1}')
    with caplog.at_level(logging.WARNING, logger="asyncflow.cache.redis"):
        assert await cache.get(TASK_ID) is None
        assert await cache.get(TASK_ID) is None
    warnings = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(warnings) == 1
    # The reader's fill of the row it then read from the store (same version) repairs it.
    await cache.fill([row(3)], cache.generation())
    assert await version_of(cache) == 3


# -- generations ------------------------------------------------------------------


async def test_a_row_from_before_a_generation_change_is_not_served(
    replicas: Replicas, redis_prefix: str, raw: aioredis.Redis
) -> None:
    cache = await replicas.open()
    await cache.put([row(1)], cache.generation())
    ticket = cache.generation()  # a reader misses and reads version 2 from the store...
    await raw.incr(
        f"{redis_prefix}cache1:generation"
    )  # ...while a write it cannot see is forgotten with the generation
    await cache.fill([row(2)], ticket)
    assert await version_of(cache) is None  # neither the old entry nor the late row
    # The late row still marks version 2: an older row filled in afterwards is refused too.
    await cache.fill([row(1)], cache.generation())
    assert await version_of(cache) is None
    await cache.fill([row(3)], cache.generation())
    assert await version_of(cache) == 3


async def test_a_replica_that_vanishes_bumps_the_generation(
    replicas: Replicas, proxy: RedisProxy
) -> None:
    reader = await replicas.open()
    vanished = await replicas.open(proxy.url)
    await vanished.put([row(1)], vanished.generation())
    assert await version_of(reader) == 1
    # Killed, or cut off for good: it renews nothing any more, and it may have
    # written the store without reaching Redis. Once its lease has run out,
    # nothing cached before is served.
    proxy.stall()
    await eventually(lambda: _missing(reader), within=5, what="the lost replica's lease to end")


async def _missing(cache: RedisTaskCache) -> bool:
    return await version_of(cache) is None


async def test_a_replica_that_stops_cleanly_leaves_the_cache_as_it_is(
    replicas: Replicas, redis_prefix: str, raw: aioredis.Redis
) -> None:
    members = f"{redis_prefix}cache1:members"
    reader = await replicas.open()
    leaving = await replicas.open()
    await leaving.put([row(1)], leaving.generation())
    assert await raw.zcard(members) == 2
    await leaving.close()
    assert await raw.zcard(members) == 1  # no lease left behind to run out
    assert await version_of(reader) == 1


# -- a replica cut off from Redis ----------------------------------------------------


async def test_a_write_whose_put_cannot_reach_redis_leaves_no_older_state_readable(
    replicas: Replicas, proxy: RedisProxy
) -> None:
    reader = await replicas.open()
    writer = await replicas.open(proxy.url)
    await writer.put([row(1)], writer.generation())
    assert await version_of(reader) == 1

    proxy.stall()  # the writer's replica loses Redis; the reader's does not
    ticket = writer.generation()
    await writer.put([row(2)], ticket)  # returns: the store has version 2
    assert await version_of(reader) is None  # never version 1 again
    # The writer stopped paying timeouts: its breaker is open, reads miss at once.
    attempts = writer.breaker.attempts
    assert writer.breaker.open
    assert [await writer.get(TASK_ID) for _ in range(20)] == [None] * 20
    assert writer.breaker.attempts == attempts

    await reader.fill([row(2)], reader.generation())  # another reader fills in the store's row
    assert await version_of(reader) == 2
    proxy.resume()
    await eventually(lambda: _closed(writer), within=5, what="the writer's breaker to close")
    # Back, it bumps the generation for the write that missed Redis (and for any
    # other it made while cut off, when nothing could protect them): a miss.
    assert await version_of(reader) is None
    await writer.put([row(3)], writer.generation())
    assert await version_of(reader) == 3


async def _closed(cache: RedisTaskCache) -> bool:
    return not cache.breaker.open


async def test_a_put_waits_for_a_connection_instead_of_failing(replicas: Replicas) -> None:
    """The pool is bounded: more concurrent calls than connections wait their turn."""
    cache = await replicas.open(redis_max_connections=2, redis_wait_seconds=30)
    await cache.put([row(1)], cache.generation())
    seen = await asyncio.gather(*(version_of(cache) for _ in range(300)))
    assert seen == [1] * 300
    assert not cache.breaker.open


# -- Redis restarted with its data ----------------------------------------------------


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(directory=tmp_path)
    redis.start()
    yield redis
    if redis.process is not None:
        redis.kill()


async def test_redis_restarted_from_a_snapshot_serves_nothing_older(
    replicas: Replicas, persistent_redis: PrivateRedis
) -> None:
    cache = await replicas.open(persistent_redis.url)
    await cache.put([row(1)], cache.generation())
    raw = aioredis.Redis.from_url(persistent_redis.url)
    try:
        await raw.save()  # the snapshot holds version 1...
    finally:
        await raw.aclose()
    await cache.put([row(2)], cache.generation())  # ...the put of version 2 was acknowledged
    persistent_redis.kill()
    before = cache.generation()
    persistent_redis.start()  # loads the snapshot: version 1 is back in Redis
    await eventually(lambda: _generation_moved(cache, before), within=5, what="redis to be back")
    assert await version_of(cache) is None


async def _generation_moved(cache: RedisTaskCache, before: int) -> bool:
    await cache.get("other_lark_1")
    return cache.generation() != before
