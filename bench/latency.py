"""Issue 9 item 5: create -> handler start with an idle worker, 200 tasks 20 ms apart.

Reuses bench.stream's measurement: a real `asyncflow serve` process, the
producer and an SDK Worker (idle on its WorkTasks stream) in this process, one
clock for both ends.

The reference, in the same run: the same `Client.create` calls, spaced alike,
against the echo servicer (bench/echo.py, answering a real CreateTask reply):
what one gRPC call costs from idle on this machine, before asyncflow does
anything. A call that follows a pause pays for waking both processes and
gRPC's poller threads; back to back it costs a third of that. And one durable
commit from idle: a one-row INSERT in autocommit, spaced alike, straight to
the backend (MariaDB over pymysql, or an SQLite file in WAL mode with
synchronous FULL, the server's settings). A create that is handed to a worker
pays at least one of each.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pymysql

from asyncflow.client import Client
from asyncflow.v1 import task_service_pb2 as pb
from bench.common import MYSQL, TaskRows, clean_env, listening, percentiles, scratch, server_process
from bench.report import Figure
from bench.stream import latency

RATE = 50.0
"""Creates per second: 20 ms apart, so each one finds the processes idle."""


async def run(address: str, count: int) -> dict[str, float]:
    async with Client(address) as client:
        await client.register_type("lat", schedule_limit=100)
    return await latency(address, count, rate=RATE, stream=True)


async def echo_calls(address: str, count: int) -> dict[str, float]:
    """Milliseconds per `Client.create` against the echo servicer, RATE per second."""
    took = []
    async with Client(address) as client:
        for _ in range(count):
            start = time.perf_counter()
            await client.create("lat")
            took.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(1 / RATE)
    return percentiles(took)


def commit_reference(backend: str, database: str, count: int) -> dict[str, float]:
    """Milliseconds per durable one-row INSERT in autocommit, RATE per second."""
    took = []
    with tempfile.TemporaryDirectory(prefix="asyncflow-bench-commit-") as tmp:
        if backend == "sqlite":
            conn: Any = sqlite3.connect(Path(tmp) / "commit.db", isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        else:
            conn = pymysql.connect(**MYSQL, database=database, autocommit=True)
        try:
            cur = conn.cursor()
            cur.execute("CREATE TABLE bench_commit (id INTEGER PRIMARY KEY, v VARCHAR(16))")
            for n in range(count):
                start = time.perf_counter()
                cur.execute(f"INSERT INTO bench_commit (id, v) VALUES ({n + 1}, 'x')")
                took.append((time.perf_counter() - start) * 1000)
                time.sleep(1 / RATE)
            cur.execute("DROP TABLE bench_commit")
        finally:
            conn.close()
    return percentiles(took)


def echo_reference(count: int) -> dict[str, float]:
    reply = pb.CreateTaskResponse(
        task=pb.Task(task_id="lat-1-0000000000000001", task_type="lat",
                     status=pb.TASK_STATUS_PROCESSING),
        created=True,
    )  # fmt: skip
    with tempfile.NamedTemporaryFile(suffix=".bin") as file:
        file.write(reply.SerializeToString())
        file.flush()
        command = [sys.executable, "-m", "bench.echo", "--reply", f"CreateTask={file.name}"]
        echo, address = listening(command, clean_env(), "echo listening on ")
        try:
            return asyncio.run(echo_calls(address, count))
        finally:
            echo.terminate()
            echo.wait(10)
            assert echo.stdout is not None
            echo.stdout.close()


def measure(backend: str, quick: bool) -> list[Figure]:
    count = 50 if quick else 200
    with scratch(backend) as database:
        with server_process(database, f"bench:{uuid.uuid4().hex[:8]}:", backend) as (address, _):
            cuts = asyncio.run(run(address, count))
        rows = TaskRows(backend, database, "lat")
        started = rows.count("status <> 1")
        rows.close()
        commit = commit_reference(backend, database, count)
    if started != count:
        raise RuntimeError(f"lat: {started} of {count} tasks left PENDING")
    echo = echo_reference(count)
    what = f"create -> handler start, idle worker, {count} tasks 20 ms apart"
    durable = f"reference: one-row INSERT, autocommit, durable, {count} 20 ms apart"
    alone = f"reference: Client.create against the echo servicer, {count} calls 20 ms apart"
    return [
        Figure(5, f"{what}: p50", cuts["p50"], "ms", "p50 <= 2 ms", cuts["p50"] <= 2, backend),
        Figure(5, f"{what}: p95", cuts["p95"], "ms", "p95 <= 5 ms", cuts["p95"] <= 5, backend),
        Figure(5, f"{alone}: p50", echo["p50"], "ms", backend=backend),
        Figure(5, f"{alone}: p95", echo["p95"], "ms", backend=backend),
        Figure(5, f"{durable}: p50", commit["p50"], "ms", backend=backend),
        Figure(5, f"{durable}: p95", commit["p95"], "ms", backend=backend),
    ]
