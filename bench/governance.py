"""What each governance pass costs on a task table of 1,000,000 rows (MariaDB).

    .venv/bin/python -m bench.governance [--rows 1000000]

Fills t_big_task_1 with SQL (MariaDB's sequence engine), then runs each pass
through the real store on a one-connection pool and reads that session's
counters around it: statements sent (Questions) and rows the engine read
(Handler_read_*), with the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pymysql

from asyncflow.cache.memory import NoTaskCache
from asyncflow.clock import SystemClock
from asyncflow.core.governance import Governance, GovernanceSettings
from asyncflow.core.model import TypeSettings
from asyncflow.core.service import TaskCore
from asyncflow.store.mysql import MysqlStore
from bench.common import MYSQL, scratch_database

COUNTERS = ("Questions", "Handler_read_first", "Handler_read_key", "Handler_read_next",
            "Handler_read_rnd_next", "Handler_read_last", "Handler_read_prev")  # fmt: skip


def fill(database: str, rows: int, now: int) -> None:
    """rows tasks: 1 in 1000 processing with an expired lease, 1 in 1000 pending, rest done."""
    conn = pymysql.connect(**MYSQL, database=database, autocommit=True)
    try:
        conn.cursor().execute(
            f"""
            INSERT INTO t_big_task_1 (task_id, task_type, user_id, task_stage, status, priority,
                crt_retry_num, max_retry_num, retry_interval, max_retry_interval, schedule_log,
                task_context, order_time, lease_token, hold_count, lease_deadline, version,
                create_time, modify_time)
            SELECT CONCAT(LPAD(seq, 12, '0'), '_big_1'), 'big', '', '',
                CASE MOD(seq, 1000) WHEN 0 THEN 2 WHEN 1 THEN 1 ELSE 3 END, 0, 0, 3, 5, 30, '', '',
                %s - 1000000 + seq, IF(MOD(seq, 1000) = 0, 'tok', ''), 1,
                IF(MOD(seq, 1000) = 0, %s - 60, 0), 2, %s - 3600, %s - 3600
            FROM seq_1_to_{rows}
            """,
            (now, now, now, now),
        )
    finally:
        conn.close()


async def counters(store: MysqlStore) -> dict[str, int]:
    async with store._pool.acquire() as conn, conn.cursor() as cur:
        names = ", ".join(f"'{name}'" for name in COUNTERS)  # constants, not input
        await cur.execute(f"SHOW SESSION STATUS WHERE Variable_name IN ({names})")
        return {name: int(value) for name, value in await cur.fetchall()}


async def measure(store: MysqlStore, action: Callable[[], Awaitable[object]]) -> str:
    before = await counters(store)
    start = time.perf_counter()
    result = await action()
    elapsed = (time.perf_counter() - start) * 1000
    after = await counters(store)
    statements = after["Questions"] - before["Questions"] - 1  # minus our SHOW
    reads = sum(after[c] - before[c] for c in COUNTERS if c != "Questions")
    return f"| {statements} | {reads:,} | {elapsed:.1f} | {result} |"


@asynccontextmanager
async def big_table(rows: int) -> AsyncIterator[tuple[str, MysqlStore, TaskCore]]:
    """A scratch database whose t_big_task_1 holds `rows` tasks (see fill), with a
    store on a one-connection pool and a core on it: (database, store, core)."""
    with scratch_database() as database:
        store = await MysqlStore.open(**MYSQL, database=database, pool_min=1, pool_max=1)
        try:
            await store.migrate()
            core = TaskCore(store, NoTaskCache(), SystemClock())
            await core.register_type(TypeSettings("big"))
            fill(database, rows, core.clock.now())
            yield database, store, core
        finally:
            await store.close()


async def main(rows: int) -> None:
    async with big_table(rows) as (database, store, core):
        gov = Governance(
            store, core.clock, core.recover_stuck, GovernanceSettings(table_max_rows=rows + 1)
        )
        print(f"t_big_task_1: {rows:,} rows (0.1% processing with expired leases, 0.1% "
              "pending, the rest succeeded)\n")  # fmt: skip
        print("| pass | statements | rows read | ms | result |")
        print("|---|---|---|---|---|")
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("recover_stuck (1,000 expired leases, batch 1000)", gov.recover_stuck),
            ("recover_stuck (nothing expired)", gov.recover_stuck),
            ("split_tables (table not full)", gov.split_tables),
            ("advance_begin (begin == end)", gov.advance_begin),
        ]
        for name, action in steps:
            print(f"| {name} " + await measure(store, action))
        full = Governance(
            store, core.clock, core.recover_stuck, GovernanceSettings(table_max_rows=rows)
        )
        print("| split_tables (table full: new table) " + await measure(store, full.split_tables))
        print("| advance_begin (begin table has live tasks) "
              + await measure(store, gov.advance_begin))  # fmt: skip
        conn = pymysql.connect(**MYSQL, database=database, autocommit=True)
        conn.cursor().execute("UPDATE t_big_task_1 SET status = 3 WHERE status IN (1, 2)")
        conn.close()
        print("| advance_begin (begin table all terminal) "
              + await measure(store, gov.advance_begin))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args().rows))
