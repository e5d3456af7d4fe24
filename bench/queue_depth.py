"""What one count of the queue depth costs on a task table of 1,000,000 rows (MariaDB).

    .venv/bin/python -m bench.queue_depth [--rows 1000000]

The HTTP side counts tasks by type and status every
http.queue_depth_interval_seconds (asyncflow.http.depth): one GROUP BY status
per table, through the real store on a one-connection pool. Same table and
counters as bench.governance.
"""

from __future__ import annotations

import argparse
import asyncio

from asyncflow.cache.memory import NoTaskCache
from asyncflow.clock import SystemClock
from asyncflow.core.model import TypeSettings
from asyncflow.core.service import TaskCore
from asyncflow.store.mysql import MysqlStore
from bench.common import MYSQL, scratch_database
from bench.governance import fill, measure


async def main(rows: int) -> None:
    with scratch_database() as database:
        store = await MysqlStore.open(**MYSQL, database=database, pool_min=1, pool_max=1)  # type: ignore[arg-type]
        try:
            await store.migrate()
            core = TaskCore(store, NoTaskCache(), SystemClock())
            await core.register_type(TypeSettings("big"))
            fill(database, rows, core.clock.now())
            print(f"t_big_task_1: {rows:,} rows (0.1% processing, 0.1% pending, the rest "
                  "succeeded)\n")  # fmt: skip
            print("| count | statements | rows read | ms | result |")
            print("|---|---|---|---|---|")
            for run in ("first (cold)", "second", "third"):
                counts = await measure(store, lambda: core.count_tasks("big"))
                print(f"| {run} {counts}".replace("<TaskStatus.", "").replace(">", ""))
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args().rows))
