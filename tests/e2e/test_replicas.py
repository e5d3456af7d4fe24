"""Several replicas on one MariaDB and one Redis, with their governance loops running.

Rolling: tables fill, split and retire while workers drain tasks through all
replicas; no task is lost, held twice or left behind, and each split and each
advance happens exactly once (§12.6, §12.21). Takeover: a leader killed with
SIGKILL is replaced once its lock's TTL runs out.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
import redis.asyncio as aioredis
from conftest import MYSQL, REDIS_URL, Running, StartServer, serve_env
from replicas import Replica
from rpc import SUCCESS, counts, create, hold, register, report
from waiting import eventually

from asyncflow.config import Config
from asyncflow.core.governance import GovernanceSettings
from asyncflow.v1 import task_service_pb2 as pb

TASKS = 2_000
TABLE_MAX_ROWS = 50
FAST = GovernanceSettings(
    long_process_interval=0.05,
    split_interval=0.05,
    move_interval=0.05,
    table_max_rows=TABLE_MAX_ROWS,
    lock_ttl_seconds=1.0,
)


def table_sizes(database: str) -> dict[int, int]:
    conn = pymysql.connect(**MYSQL, database=database)
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT schedule_begin_pos, schedule_end_pos FROM t_schedule_pos"
            " WHERE task_type = 'lark'"
        )
        _, end = cur.fetchone()
        sizes = {}
        for pos in range(1, end + 1):
            cur.execute(f"SELECT COUNT(*) FROM t_lark_task_{pos}")
            sizes[pos] = cur.fetchone()[0]
        return sizes
    finally:
        conn.close()


@pytest.mark.parametrize("backend", ["mysql"])
async def test_rolling_tables_across_three_replicas(
    start_server: StartServer, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asyncflow.core.governance")
    replicas: list[Running] = [await start_server(config, governance=FAST) for _ in range(3)]
    await register(replicas[0].stub, schedule_limit=20)
    rng = random.Random(11)
    created: set[str] = set()
    held: Counter[str] = Counter()
    producing = True

    async def producer() -> None:
        nonlocal producing
        for wave in range(TASKS // 50):
            tasks = await asyncio.gather(
                *(create(replicas[(wave + i) % 3].stub) for i in range(50))
            )
            created.update(t.task_id for t in tasks)
        producing = False

    async def worker() -> None:
        while producing or len(held) < TASKS:
            batch = await hold(rng.choice(replicas).stub, limit=20)
            if not batch:
                await asyncio.sleep(0.01)  # an idle polling worker's back-off
                continue
            for task in batch:
                held[task.task_id] += 1
            await asyncio.gather(*(report(rng.choice(replicas).stub, t, SUCCESS) for t in batch))

    await asyncio.wait_for(asyncio.gather(producer(), *(worker() for _ in range(8))), 120)

    assert len(created) == TASKS
    assert set(held) == created
    assert max(held.values()) == 1
    assert await counts(replicas[2].stub) == {
        pb.TASK_STATUS_PENDING: 0,
        pb.TASK_STATUS_PROCESSING: 0,
        pb.TASK_STATUS_SUCCESS: TASKS,
        pb.TASK_STATUS_FAILED: 0,
        pb.TASK_STATUS_CANCELLED: 0,
    }

    store = replicas[0].server.core.store

    async def begin_caught_up() -> bool:
        config = await store.type_get("lark")
        return config is not None and config.begin_pos == config.end_pos

    await eventually(begin_caught_up, within=20, what="begin_pos reaching end_pos")
    final = await store.type_get("lark")
    assert final is not None
    sizes = table_sizes(config.store.mysql_database)
    assert sum(sizes.values()) == TASKS
    assert len(sizes) == final.end_pos >= 10  # the tasks spread over many tables
    # A table is only split once full: every closed table got its rows first.
    assert all(sizes[pos] >= TABLE_MAX_ROWS for pos in range(1, final.end_pos))

    # Each split and each advance was done (and logged) exactly once, by one replica.
    # A pass logs after its write commits, and other replicas (and this test) may
    # see the write first: wait until the last ones are logged too.
    def logged(action: str, field: str) -> list[int]:
        return sorted(int(getattr(r, field)) for r in caplog.records
                      if getattr(r, "action", "") == action)  # fmt: skip

    async def all_logged() -> bool:
        return (
            len(logged("split", "end_pos")) >= final.end_pos - 1
            and len(logged("advance_begin", "begin_pos")) >= final.begin_pos - 1
        )

    await eventually(all_logged, within=10, what="every split and advance logged")
    assert logged("split", "end_pos") == list(range(2, final.end_pos + 1))
    assert logged("advance_begin", "begin_pos") == list(range(2, final.begin_pos + 1))


# -- leader takeover after SIGKILL --------------------------------------------


@pytest.fixture
def replica_env(config: Config) -> dict[str, str]:
    return serve_env(
        config,
        ASYNCFLOW_SERVER_PORT="0",
        ASYNCFLOW_SERVER_SHUTDOWN_DELAY_SECONDS="0",  # no load balancer to wait for
        ASYNCFLOW_GOVERNANCE_LONG_PROCESS_INTERVAL="0.2",
        ASYNCFLOW_GOVERNANCE_SPLIT_INTERVAL="0.2",
        ASYNCFLOW_GOVERNANCE_MOVE_INTERVAL="0.2",
        ASYNCFLOW_GOVERNANCE_LOCK_TTL_SECONDS="1.5",
    )


@pytest.fixture
def replicas(replica_env: dict[str, str], tmp_path: Path) -> Iterator[list[Replica]]:
    started = [Replica(replica_env, tmp_path / f"replica-{i}.log") for i in range(3)]
    yield started
    for replica in started:
        replica.stop()


@pytest.mark.parametrize("backend", ["mysql"])
async def test_killed_leader_is_replaced_within_the_ttl(
    replicas: list[Replica], redis_prefix: str
) -> None:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    keys = [f"{redis_prefix}lock:{loop}" for loop in ("recover_stuck", "split", "advance_begin")]
    by_pid = {r.pid: r for r in replicas}

    async def leaders() -> dict[str, int]:
        owners = {key: await client.get(key) for key in keys}
        return {key: int(owner.split(":")[1]) for key, owner in owners.items() if owner}

    async def every_loop_led() -> bool:
        return len(await leaders()) == len(keys)

    try:
        await eventually(every_loop_led, within=30, what="a leader for every loop")
        first = await leaders()
        assert set(first.values()) <= set(by_pid)
        victim = by_pid[first[keys[0]]]
        victim.process.kill()  # SIGKILL: no release, no goodbye
        victim.process.wait()

        async def replaced() -> bool:
            now = await leaders()
            return all(now.get(key) not in (None, victim.pid) for key in keys)

        waited = await eventually(replaced, within=1.5 + 0.5 + 5, what="takeover")
        after = await leaders()
        assert victim.pid not in after.values()
        assert set(after.values()) <= set(by_pid) - {victim.pid}
        print(f"takeover of every loop led by the killed replica took {waited:.2f}s")
    finally:
        await client.aclose()
    for replica in replicas:
        if replica is not victim:
            assert replica.stop() == 0
