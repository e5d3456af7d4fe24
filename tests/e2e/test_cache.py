"""Read-your-writes through the cache, and correctness with Redis gone (reference §12.18)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import REDIS_URL, Running, StartServer
from rpc import SUCCESS, create, get, hold, next_stage, register, report

from asyncflow.cache import TaskCache
from asyncflow.cache.connection import open_pool
from asyncflow.cache.memory import MemoryTaskCache
from asyncflow.cache.redis import RedisTaskCache
from asyncflow.config import CacheConfig, Config
from asyncflow.core.model import Task, TaskStatus
from asyncflow.core.service import DEFAULT_TYPE
from asyncflow.store.base import TaskStore
from asyncflow.v1 import task_service_pb2 as pb


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class PrivateRedis:
    """A redis-server of the test's own, so stopping it disturbs no other test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self._answers, "private redis-server")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis()
    redis.start()
    yield redis
    if redis.process is not None:
        redis.kill()


@pytest.mark.parametrize("backend", ["mysql"])
async def test_redis_down_degrades_speed_not_correctness(
    start_server: StartServer,
    config: Config,
    private_redis: PrivateRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await start_server(
        config, cache=CacheConfig(backend="redis", redis_url=private_redis.url)
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
