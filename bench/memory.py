"""Issue 9 item 6: server RSS with 1,000,000 pending tasks and 100 idle WorkTasks streams.

    python -m bench memory [--quick]

MariaDB + Redis. The pending tasks are written by SQL in one statement
(MariaDB's sequence engine), due now, of a type no worker asks for; 100
streams of an SDK Worker in this process wait on another type with nothing
to do. The server's HTTP side counts the queue depth every second meanwhile
(asyncflow_queue_depth), and /metrics must show the 100 streams open. The
figure is the server's peak RSS over the settling window.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid

import pymysql

from asyncflow.client import Client
from asyncflow.worker import Job, Worker
from bench.common import MYSQL, free_port, rss_mib, scratch_database, server_process
from bench.report import Figure

STREAMS = 100


def fill(database: str, rows: int, now: int) -> None:
    """`rows` PENDING tasks of type "mem", due already, in t_mem_task_1."""
    conn = pymysql.connect(**MYSQL, database=database, autocommit=True)
    try:
        conn.cursor().execute(
            f"""
            INSERT INTO t_mem_task_1 (task_id, task_type, user_id, task_stage, status, priority,
                crt_retry_num, max_retry_num, retry_interval, max_retry_interval, schedule_log,
                task_context, order_time, lease_token, hold_count, lease_deadline, version,
                create_time, modify_time)
            SELECT CONCAT(LPAD(seq, 12, '0'), '_mem_1'), 'mem', '', '', 1, 0, 0, 3, 5, 30,
                '', '{{"n": 1}}', %s - 60, '', 0, 0, 1, %s - 60, %s - 60
            FROM seq_1_to_{rows}
            """,
            (now, now, now),
        )
    finally:
        conn.close()


def streams_open(http: str) -> float:
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("asyncflow_streams_open "):
                return float(line.split()[1])
    return -1.0


async def idle(job: Job) -> None:
    raise AssertionError("no idle task exists")


async def run(address: str, http: str, database: str, rows: int, pid: int,
              settle: float) -> tuple[float, float, int]:  # fmt: skip
    """(RSS before the fill, peak RSS with the backlog and streams, pending count)."""
    async with Client(address) as client:
        await client.register_type("mem")
        await client.register_type("idle")
        before = rss_mib(pid)
        fill(database, rows, int(time.time()))
        worker = Worker(address, handlers={"idle": idle}, streams=STREAMS, concurrency=STREAMS)
        async with worker:
            deadline = time.monotonic() + 60
            while await asyncio.to_thread(streams_open, http) < STREAMS:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"/metrics never showed {STREAMS} open streams")
                await asyncio.sleep(0.1)
            peak, end = 0.0, time.monotonic() + settle
            while time.monotonic() < end:
                peak = max(peak, rss_mib(pid))
                await asyncio.sleep(0.1)
            counts = await client.count("mem")
    pending = sum(n for status, n in counts.items() if status.name == "PENDING")
    return before, peak, pending


def measure(quick: bool) -> list[Figure]:
    rows, settle = (100_000, 1.5) if quick else (1_000_000, 10.0)
    port = free_port()
    settings = {
        "ASYNCFLOW_HTTP_PORT": str(port),
        "ASYNCFLOW_HTTP_QUEUE_DEPTH_INTERVAL_SECONDS": "1",
    }
    with scratch_database() as database:
        prefix = f"bench:{uuid.uuid4().hex[:8]}:"
        with server_process(database, prefix, settings=settings) as (address, pid):
            before, peak, pending = asyncio.run(
                run(address, f"127.0.0.1:{port}", database, rows, pid, settle)
            )
    if pending != rows:
        raise RuntimeError(f"mem: {pending} pending tasks counted, {rows} written")
    what = f"server RSS, {rows:,} pending tasks + {STREAMS} idle streams"
    return [
        Figure(6, f"{what}: peak", peak, "MiB", "<= 150 MB (143 MiB)", peak * 2**20 <= 150e6),
        Figure(6, "server RSS before the fill, no streams", before, "MiB"),
    ]
