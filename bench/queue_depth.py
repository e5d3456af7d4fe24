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

from bench.governance import big_table, measure


async def main(rows: int) -> None:
    async with big_table(rows) as (_, store, core):
        print(f"t_big_task_1: {rows:,} rows (0.1% processing, 0.1% pending, the rest "
              "succeeded)\n")  # fmt: skip
        print("| count | statements | rows read | ms | result |")
        print("|---|---|---|---|---|")

        async def count() -> dict[str, int]:
            counts = await core.count_tasks("big")
            return {status.name.lower(): n for status, n in counts.items()}

        for run in ("first", "second", "third"):
            print(f"| {run} " + await measure(store, count))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args().rows))
