"""Cache writes that fail: no older state is served afterwards, and reads keep store speed.

Two replicas share MariaDB and a Redis; one of them loses Redis (its proxy
stalls, or its connection pool is held by the test), or Redis itself is
stalled (a private redis-server, SIGSTOP). A write through the replica that
lost Redis must still never leave the older cached state readable, from either
replica, and reads must stop paying Redis timeouts once the breaker opens.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from conftest import Running, StartServer
from redis_tools import FAST, PrivateRedis, RedisProxy
from rpc import create, get, hold, next_stage, register, report
from waiting import eventually

from asyncflow.cache.redis import RedisTaskCache
from asyncflow.config import CacheConfig, Config
from asyncflow.v1 import task_service_pb2 as pb

pytestmark = pytest.mark.parametrize("backend", ["mysql"])


def cache_of(replica: Running) -> RedisTaskCache:
    cache = replica.server.core.cache
    assert isinstance(cache, RedisTaskCache)
    return cache


async def breaker_closed(replica: Running) -> bool:
    return not cache_of(replica).breaker.open


async def held_and_cached(writer: Running, reader: Running) -> pb.Task:
    """A task held through `writer`, its PROCESSING state cached and read by `reader`."""
    await register(writer.stub)
    task = await create(writer.stub, task_stage="one")
    (held,) = await hold(writer.stub)
    assert (await get(reader.stub, task.task_id)).status == pb.TASK_STATUS_PROCESSING
    return held


async def test_a_report_through_a_replica_cut_off_from_redis_is_read_back_everywhere(
    start_server: StartServer, config: Config, proxy: RedisProxy
) -> None:
    cut = await start_server(config, cache=replace(config.cache, redis_url=proxy.url, **FAST))
    other = await start_server(config, cache=replace(config.cache, **FAST))
    held = await held_and_cached(cut, other)

    proxy.stall()  # a partition between one replica and Redis; Redis keeps its data
    moved = await report(cut.stub, held, next_stage("two"))
    assert moved.status == pb.TASK_STATUS_PENDING
    for replica in (other, cut, other):
        seen = await get(replica.stub, held.task_id)
        assert (seen.status, seen.task_stage) == (pb.TASK_STATUS_PENDING, "two")

    proxy.resume()
    await eventually(lambda: breaker_closed(cut), within=10, what="the cut replica to be back")
    for replica in (other, cut):
        assert (await get(replica.stub, held.task_id)).task_stage == "two"


async def test_a_report_whose_cache_write_finds_no_free_connection_is_read_back_everywhere(
    start_server: StartServer, config: Config
) -> None:
    """The issue's case: the writer's pool refuses (here: has no free connection
    within redis_wait_seconds), the cache write fails, and the older entry must
    not stay readable."""
    starved_cache = replace(config.cache, redis_max_connections=2, redis_wait_seconds=0.05, **FAST)
    starved = await start_server(config, cache=starved_cache)
    other = await start_server(config, cache=replace(config.cache, **FAST))
    held = await held_and_cached(starved, other)

    pool = starved.server.redis_pool
    assert pool is not None
    taken = []  # every free connection (the wake-up relay keeps one): cache calls now fail
    while pool.can_get_connection():
        taken.append(await pool.get_connection())
    try:
        await report(starved.stub, held, next_stage("two"))
        seen = await get(other.stub, held.task_id)
        assert (seen.status, seen.task_stage) == (pb.TASK_STATUS_PENDING, "two")
    finally:
        for connection in taken:
            await pool.release(connection)
    await eventually(lambda: breaker_closed(starved), within=10, what="the pool to serve again")
    assert (await get(starved.stub, held.task_id)).task_stage == "two"


async def test_reads_stop_trying_a_stalled_redis_and_nothing_older_is_served_after_it(
    start_server: StartServer, config: Config, private_redis: PrivateRedis
) -> None:
    stalled = CacheConfig(backend="redis", redis_url=private_redis.url, **FAST)
    server = await start_server(config, cache=stalled)
    stub = server.stub
    await register(stub)
    tasks = [await create(stub) for _ in range(48)]
    (held, *_) = await hold(stub, limit=1)
    for task in tasks:
        await get(stub, task.task_id)  # all cached, the held one as PROCESSING

    private_redis.stall()  # connections stay open, nothing answers, data kept
    await report(stub, held, next_stage("two"))
    breaker = cache_of(server).breaker
    assert breaker.open
    attempts = breaker.attempts
    for _ in range(5):  # 48 concurrent readers, 5 rounds: none waits for Redis
        seen = await asyncio.gather(*(get(stub, t.task_id) for t in tasks))
        assert [t.task_id for t in seen] == [t.task_id for t in tasks]
    assert breaker.attempts == attempts  # only the heartbeat probes while it is away
    assert (await get(stub, held.task_id)).task_stage == "two"

    private_redis.resume()  # back with every entry it had, the PROCESSING one included
    await eventually(lambda: breaker_closed(server), within=10, what="redis to be back")
    seen = await get(stub, held.task_id)
    assert (seen.status, seen.task_stage) == (pb.TASK_STATUS_PENDING, "two")
