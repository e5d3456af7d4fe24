"""Issue 9 item 4: drain of a no-op backlog by two `asyncflow worker` processes.

    python -m bench drain [--backend mysql|sqlite] [--quick]

A backlog of 20,000 tasks is created first (create_many); then two real
`asyncflow worker bench.noop_worker:handlers` processes (concurrency 64,
prefetch 64) drain it. The rate is counted from the first SUCCESS to the last,
read straight from the store's table (so the measurement does not load the
server it measures), and the run fails unless every task ended SUCCESS.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from asyncflow.client import Client, TaskSpec
from bench.common import (
    CHILD_URLS,
    CountedUser,
    TaskRows,
    clean_env,
    cpu_seconds,
    machine_jiffies,
    mariadb_pid,
    metric_sums,
    scratch,
    server_process,
)
from bench.report import Figure

ROOT = Path(__file__).resolve().parents[1]
SUCCESS, LIVE = "status = 3", "status IN (1, 2)"  # PENDING, PROCESSING; constants, not input


def worker(
    address: str, task_type: str, concurrency: int = 64, prefetch: int = 64
) -> subprocess.Popen[bytes]:
    """An `asyncflow worker` process with no-op handlers for `task_type`."""
    binary = Path(sys.executable).with_name("asyncflow")
    command = [str(binary), "worker", "bench.noop_worker:handlers", "--address", address,
               "--concurrency", str(concurrency), "--prefetch", str(prefetch),
               "--log-level", "WARNING"]  # fmt: skip
    env = clean_env() | {"BENCH_NOOP_TYPES": task_type, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)


@contextmanager
def workers(
    address: str | list[str], task_type: str, processes: int = 2
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`asyncflow worker` processes with no-op handlers for `task_type`, stopped after;
    `address` a list: one worker per address."""
    addresses = address if isinstance(address, list) else [address] * processes
    started = [worker(at, task_type) for at in addresses]
    try:
        yield started
    finally:
        stop(started)


def stop(started: list[subprocess.Popen[bytes]]) -> None:
    for process in started:
        process.terminate()
    for process in started:
        process.wait(60)


def streams_open(urls: list[str]) -> list[float]:
    """asyncflow_streams_open of each server process (their own /metrics)."""
    return metric_sums(urls, "asyncflow_streams_open")


def settle(urls: list[str], total: float, deadline: float) -> list[float]:
    """Poll the streams open until they add up to `total`."""
    while sum(now := streams_open(urls)) != total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"streams open {now}, expected {total} in all")
        time.sleep(0.05)
    return now


@contextmanager
def placed_workers(
    address: str, task_type: str, urls: list[str]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """One worker per process of `serve --processes N` (`urls`: their HTTP sides).
    The kernel gives each new connection to a random process, so a worker whose
    stream landed where another already is gets replaced, until each process
    has its own (the comparison with one process is then of the same load)."""
    started: list[subprocess.Popen[bytes]] = []
    deadline = time.monotonic() + 300
    try:
        while len(started) < len(urls):
            before = settle(urls, len(started), deadline)
            candidate = worker(address, task_type)
            after = settle(urls, len(started) + 1, deadline)
            if any(a > b and b == 0 for a, b in zip(after, before, strict=True)):
                started.append(candidate)
            else:
                stop([candidate])
        yield started
    finally:
        stop(started)


async def backlog(address: str, task_type: str, count: int, paused: bool = False) -> None:
    async with Client(address) as client:
        await client.register_type(task_type, schedule_limit=500)
        if paused:
            await client.pause_type(task_type)
        for first in range(0, count, 1000):
            await client.create_many([TaskSpec(task_type) for _ in range(min(1000, count - first))])


async def resume(address: str, task_type: str) -> None:
    async with Client(address) as client:
        await client.resume_type(task_type)


@dataclass(frozen=True)
class Drained:
    tasks_per_second: float
    worker_cpu_ms: float
    """CPU of the worker processes per task, summed over them."""
    server_cpu_ms: float
    """CPU of the server processes per task, summed over them."""
    statements: float = 0.0
    """MariaDB statements per task, when the servers connect as a CountedUser."""
    mariadb_cpu_ms: float = 0.0
    """CPU of the local MariaDB server per task (0 when it is not on this machine)."""
    machine_busy: float = 0.0
    """The share of the machine's cores busy over the drain, whoever used them."""


def drained(rows: TaskRows, count: int, pids: list[subprocess.Popen[bytes]],
            servers: list[int], user: CountedUser | None, within: float = 600.0,
            ) -> Drained:  # fmt: skip
    """Tasks/s from the first SUCCESS to the last, polling the store's table, and the
    CPU the workers and the servers spent per task over the same span."""
    deadline = time.monotonic() + within
    while not rows.any(SUCCESS):
        wait_or_fail(deadline, pids)
        time.sleep(0.005)
    first, done_first = time.perf_counter(), rows.count(SUCCESS)
    database = mariadb_pid() if user else None
    cpu = [sum(cpu_seconds(p.pid) for p in pids), sum(cpu_seconds(p) for p in servers),
           cpu_seconds(database) if database else 0.0]  # fmt: skip
    busy = machine_jiffies()
    sent = user.statements() if user else 0
    while rows.any(LIVE):
        wait_or_fail(deadline, pids)
        time.sleep(0.02)
    elapsed = time.perf_counter() - first
    cpu = [sum(cpu_seconds(p.pid) for p in pids) - cpu[0],
           sum(cpu_seconds(p) for p in servers) - cpu[1],
           cpu_seconds(database) - cpu[2] if database else 0.0]  # fmt: skip
    busy_end = machine_jiffies()
    sent = user.statements() - sent if user else 0
    done = rows.count(SUCCESS)
    if done != count:
        raise RuntimeError(f"{rows.task_type}: {done} of {count} tasks ended SUCCESS")
    measured = count - done_first
    return Drained(measured / elapsed, cpu[0] * 1000 / measured, cpu[1] * 1000 / measured,
                   sent / measured, cpu[2] * 1000 / measured,
                   (busy_end[0] - busy[0]) / max(1, busy_end[1] - busy[1]))  # fmt: skip


def wait_or_fail(deadline: float, pids: list[subprocess.Popen[bytes]]) -> None:
    if time.monotonic() > deadline:
        raise RuntimeError("the backlog did not drain in time")
    if any(p.poll() is not None for p in pids):
        raise RuntimeError("a worker process exited during the drain")


def drain(backend: str, database: str, create_at: str, work_at: str | list[str], task_type: str,
          count: int, servers: list[int], user: CountedUser | None = None,
          spread: list[str] | None = None) -> Drained:  # fmt: skip
    """Create `count` tasks through `create_at`, drain them with two worker processes
    connected to `work_at` (an address, a comma-separated list for each worker, or
    a list: one address per worker) of the server processes `servers`.
    `spread`: the HTTP sides of `serve --processes 2`'s children; the type stays
    paused until each child has one worker's stream (placed_workers)."""
    asyncio.run(backlog(create_at, task_type, count, paused=spread is not None))
    rows = TaskRows(backend, database, task_type)
    try:
        if spread is None:
            with workers(work_at, task_type) as started:
                return drained(rows, count, started, servers, user)
        assert isinstance(work_at, str), "one address: the processes' shared port"
        with placed_workers(work_at, task_type, spread) as started:
            asyncio.run(resume(create_at, task_type))
            return drained(rows, count, started, servers, user)
    finally:
        rows.close()


def measure(backend: str, quick: bool, processes: int = 1) -> list[Figure]:
    """Item 4 on one server; `processes` > 1: `serve --processes N` (MariaDB), with
    each of the two workers on its own process."""
    count = 1000 if quick else 20_000
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    with scratch(backend) as database, ExitStack() as stack:
        user = stack.enter_context(CountedUser(database)) if backend == "mysql" else None
        settings = user.settings if user else {}
        address, pid = stack.enter_context(
            server_process(database, prefix, backend, processes=processes, settings=settings)
        )
        spread = CHILD_URLS[pid] if processes == 2 else None
        done = drain(backend, database, address, address, "drain", count, [pid], user, spread)
    rate = done.tasks_per_second
    served = f", serve --processes {processes}" if processes > 1 else ""
    return [
        Figure(4, f"drain of {count:,} no-op tasks, 2 worker processes (64 + 64){served}",
               rate, "tasks/s", ">= 5,000/s", rate >= 5000, backend),
        Figure(4, f"drain: worker CPU per task (both processes){served}", done.worker_cpu_ms,
               "ms", backend=backend),
        Figure(4, f"drain: server CPU per task{served}", done.server_cpu_ms, "ms",
               backend=backend),
        Figure(4, f"drain: share of the machine's cores busy (any process){served}",
               done.machine_busy * 100, "%", backend=backend),
    ] + ([
        Figure(4, f"drain: MariaDB statements per task (from the first SUCCESS){served}",
               done.statements, "", backend=backend),
        Figure(4, f"drain: MariaDB server CPU per task{served}", done.mariadb_cpu_ms, "ms",
               backend=backend),
    ] if user else [])  # fmt: skip
