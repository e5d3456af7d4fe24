"""Read-your-writes through the cache, and correctness with Redis gone (reference §12.18)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from conftest import REDIS_URL, Running, StartServer
from redis_tools import FAST, PrivateRedis
from rpc import SUCCESS, create, get, hold, next_stage, register, report
from waiting import eventually

from asyncflow.cache.connection import open_pool
from asyncflow.cache.memory import MemoryTaskCache
from asyncflow.cache.redis import RedisTaskCache
from asyncflow.config import CacheConfig, Config
from asyncflow.core.model import Task, TaskStatus
from asyncflow.core.ports import TaskCache, TaskStore
from asyncflow.core.service import DEFAULT_TYPE
from asyncflow.v1 import task_service_pb2 as pb

READS = 10_000


class PausingReads:
    """The real store, except that the next task_get pauses after reading its row.

    It lets a test hold a reader between "read the row" and "publish it to the
    cache" while a writer runs: the interleaving behind stale cache-aside reads.
    """

    def __init__(self, store: TaskStore) -> None:
        self._store = store
        self.armed = False
        self.read_done = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def task_get(self, task_type: str, pos: int, task_id: str) -> Task | None:
        task = await self._store.task_get(task_type, pos, task_id)
        if self.armed:
            self.armed = False
            self.read_done.set()
            await self.release.wait()
        return task


async def evict(server: Running, config: Config, task_id: str) -> None:
    """Drop a task's cache entry, as an expiry or eviction would."""
    cache = server.server.core.cache
    if isinstance(cache, MemoryTaskCache):
        await cache.close()
        return
    client = aioredis.Redis.from_url(config.cache.redis_url)
    try:
        assert await client.delete(f"{config.cache.key_prefix}cache1:task:{task_id}") == 1
    finally:
        await client.aclose()


async def test_slow_reader_cannot_republish_an_older_row(server: Running, config: Config) -> None:
    stub = server.stub
    await register(stub)
    task = await create(stub)
    (held,) = await hold(stub)
    await evict(server, config, task.task_id)

    core = server.server.core
    pausing = PausingReads(core.store)
    core.store = pausing  # type: ignore[assignment]
    pausing.armed = True
    reader = asyncio.create_task(get(stub, task.task_id))
    await pausing.read_done.wait()  # the reader holds the PROCESSING row
    written = await report(stub, held, SUCCESS)  # the writer commits and publishes
    pausing.release.set()
    assert (await reader).status == pb.TASK_STATUS_PROCESSING  # began before the write
    # Any read that starts after the write returned sees the write.
    assert (await get(stub, task.task_id)).status == pb.TASK_STATUS_SUCCESS
    assert written.status == pb.TASK_STATUS_SUCCESS


async def test_reads_never_go_back_under_concurrent_writes(server: Running) -> None:
    stub = server.stub
    await register(stub)
    task = await create(stub, task_stage="0")
    published = 0
    writing = True

    async def writer() -> None:
        nonlocal published, writing
        for stage in range(1, 41):
            (held,) = await hold(stub)
            await report(stub, held, next_stage(str(stage)))
            published = stage
        writing = False

    async def reader() -> int:
        reads = 0
        while writing:
            floor = published
            seen = await get(stub, task.task_id)
            assert int(seen.task_stage) >= floor
            reads += 1
        return reads

    results = await asyncio.gather(writer(), *(reader() for _ in range(6)))
    assert sum(r for r in results if r is not None) > 0
    assert (await get(stub, task.task_id)).task_stage == "40"


def progress(task: pb.Task) -> int:
    """Where a task is in the writers' sequence: hold k (PROCESSING, stage k-1) is
    2k-1, its report (PENDING, stage k) is 2k."""
    return 2 * int(task.task_stage) + (task.status == pb.TASK_STATUS_PROCESSING)


@pytest.mark.parametrize("backend", ["mysql"])
async def test_read_your_writes_with_200_readers_across_two_replicas(
    start_server: StartServer, config: Config
) -> None:
    """Every GetTask that starts after a hold or a report returned shows that
    state or a newer one, on either replica. The pools are kept small so that
    200 readers queue for connections, where a pool that refused them
    ("Too many connections") once left older entries readable."""
    small_pool = replace(config.cache, redis_max_connections=4, redis_wait_seconds=30)
    replicas = [await start_server(config, cache=small_pool) for _ in range(2)]
    await register(replicas[0].stub, schedule_limit=10)
    tasks = [await create(replicas[0].stub, task_stage="0") for _ in range(40)]
    floor = {t.task_id: 0 for t in tasks}  # the newest state a returned write showed
    stale: list[tuple[str, int, int]] = []
    errors: list[grpc.StatusCode] = []
    reads = 0
    running = True

    def returned(task: pb.Task) -> None:
        floor[task.task_id] = max(floor[task.task_id], progress(task))

    async def writer(n: int) -> None:
        while running:
            for held in await hold(replicas[n % 2].stub, limit=3):
                returned(held)
                stage = next_stage(str(int(held.task_stage) + 1))
                returned(await report(replicas[(n + 1) % 2].stub, held, stage))

    async def reader(n: int) -> None:
        nonlocal reads
        rng = random.Random(n)
        while running:
            task_id = rng.choice(tasks).task_id
            expected = floor[task_id]
            try:
                seen = await get(replicas[n % 2].stub, task_id)
            except grpc.aio.AioRpcError as error:
                errors.append(error.code())
                continue
            reads += 1
            if progress(seen) < expected:
                stale.append((task_id, progress(seen), expected))

    async def until_enough_reads() -> bool:
        return reads >= READS

    async def run() -> None:
        nonlocal running
        await eventually(until_enough_reads, within=240, what=f"{READS} reads")
        running = False

    await asyncio.gather(run(), *(writer(n) for n in range(6)), *(reader(n) for n in range(200)))
    assert stale == []
    assert errors == []
    assert sum(floor.values()) > 2 * len(tasks)  # the writers did move the tasks on


def cache_task(version: int, stage: str) -> Task:
    return Task(
        row_id=1, task_id="k_lark_1", task_type="lark", pos=1, user_id="", task_stage=stage,
        status=TaskStatus.PENDING, priority=0, crt_retry_num=0, max_retry_num=0,
        retry=DEFAULT_TYPE.retry, context="", schedule_log="", order_time=0, lease_token="",
        hold_count=0, lease_deadline=0, version=version, create_time=0, modify_time=0,
    )  # fmt: skip


@pytest.fixture(params=["memory", "redis"])
async def task_cache(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[TaskCache]:
    cache: TaskCache
    pool = None
    if request.param == "memory":
        cache = MemoryTaskCache()
    else:
        pool = open_pool(CacheConfig(backend="redis", redis_url=REDIS_URL))
        cache = RedisTaskCache(pool, key_prefix=redis_prefix, ttl_seconds=60)
        await cache.start()
    yield cache
    await cache.close()
    if pool is not None:
        await pool.disconnect()


async def test_cache_keeps_the_newest_version(task_cache: TaskCache) -> None:
    await task_cache.put([cache_task(3, "new")], task_cache.generation())
    await task_cache.fill([cache_task(2, "old")], task_cache.generation())  # a late reader's row
    cached = await task_cache.get("k_lark_1")
    assert cached is not None
    assert (cached.version, cached.task_stage) == (3, "new")
    await task_cache.put([cache_task(4, "newer")], task_cache.generation())
    newer = await task_cache.get("k_lark_1")
    assert newer is not None
    assert newer.task_stage == "newer"


# -- Redis down ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["mysql"])
async def test_redis_down_degrades_speed_not_correctness(
    start_server: StartServer,
    config: Config,
    private_redis: PrivateRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await start_server(
        config, cache=CacheConfig(backend="redis", redis_url=private_redis.url, **FAST)
    )
    stub = server.stub
    await register(stub)
    task = await create(stub, context="v1")
    (held,) = await hold(stub)
    assert (await get(stub, task.task_id)).status == pb.TASK_STATUS_PROCESSING  # cached

    private_redis.kill()
    with caplog.at_level(logging.WARNING, logger="asyncflow.cache.redis"):
        moved = await report(stub, held, next_stage("two"), context="v2")
        seen = await get(stub, task.task_id)
        assert (seen.status, seen.task_stage, seen.context) == (pb.TASK_STATUS_PENDING, "two", "v2")
        (held,) = await hold(stub)
        other = await create(stub)
        assert (await get(stub, other.task_id)).task_id == other.task_id
    assert any("redis cache unavailable" in r.getMessage() for r in caplog.records)
    assert moved.task_stage == "two"

    private_redis.start()  # back, and empty: reads fill it again from MariaDB
    await report(stub, held, SUCCESS)
    assert (await get(stub, task.task_id)).status == pb.TASK_STATUS_SUCCESS
    assert (await get(stub, task.task_id)).status == pb.TASK_STATUS_SUCCESS
