"""Issue 9 item 7: 1 vs 2 `asyncflow serve` replicas on the same MariaDB.

    python -m bench replicas [--quick]

Create: h2load (bench.rpc) against one replica with 8 connections x 16
streams, then two h2load processes at once, one per replica, 4 connections x
16 streams each; the tasks are counted in the store after each run. Drain:
a backlog drained by two worker processes connected to one replica, then
another backlog by two worker processes connected to both (the SDK opens one
stream per replica), then a third by two workers each connected to its own
replica. The ratio 2 replicas / 1 replica is the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from bench import rpc
from bench.common import CountedUser, TaskRows, scratch_database, server_process
from bench.drain import drain
from bench.report import Figure


def created(database: str) -> int:
    rows = TaskRows("mysql", database, rpc.TYPE)
    try:
        return rows.count("1 = 1")
    finally:
        rows.close()


def create_rate(options: argparse.Namespace, database: str,
                servers: list[tuple[str, int]], body: Path) -> float:  # fmt: skip
    """Calls/s of CreateTask summed over one h2load per server (connections shared out)."""
    share = argparse.Namespace(**vars(options))
    share.connections = max(1, options.connections // len(servers))
    before = created(database)
    with ThreadPoolExecutor(len(servers)) as pool:
        loads = list(pool.map(lambda s: rpc.h2load(share, s[0], "CreateTask", body, s[1]), servers))
    succeeded = sum(load.succeeded for load in loads)
    made = created(database) - before
    in_flight = share.connections * share.streams * len(servers)
    if not succeeded <= made <= succeeded + in_flight:
        raise RuntimeError(f"h2load counted {succeeded} creates, the store has {made}")
    return sum(load.calls_per_second for load in loads)


def measure(quick: bool) -> list[Figure]:
    options = rpc.options(["--duration", "1" if quick else "8"])
    rounds, count = (1, 1000) if quick else (2, 20_000)
    with scratch_database() as database, ExitStack() as stack:
        user = stack.enter_context(CountedUser(database))
        prefix = f"bench:{uuid.uuid4().hex[:8]}:"  # one cache, as replicas share it
        servers = [
            stack.enter_context(server_process(database, prefix, settings=user.settings))
            for _ in range(2)
        ]
        with tempfile.TemporaryDirectory(prefix="asyncflow-bench-") as tmp:
            files = asyncio.run(rpc.prepare(servers[0][0], Path(tmp), options.context_bytes))
            one = two = 0.0
            for _ in range(rounds):
                one += create_rate(options, database, servers[:1], files["CreateTask.req"])
                two += create_rate(options, database, servers, files["CreateTask.req"])
        both = ",".join(address for address, _ in servers)
        pids = [pid for _, pid in servers]
        one_d = drain("mysql", database, servers[0][0], servers[0][0], "rone", count, pids, user)
        two_d = drain("mysql", database, servers[0][0], both, "rtwo", count, pids, user)
        # Each worker on its own replica: one stream each with its whole window,
        # as in the one-replica run (above, each worker splits its window over
        # a stream per replica, so every claim and report batch is half as big).
        own = [address for address, _ in servers]
        own_d = drain("mysql", database, servers[0][0], own, "rown", count, pids, user)
    return [
        Figure(7, "CreateTask calls/s, 1 replica (h2load 8 x 16)", one / rounds, "calls/s"),
        Figure(7, "CreateTask calls/s, 2 replicas (h2load 4 x 16 each)", two / rounds,
               "calls/s"),
        Figure(7, "CreateTask, 2 replicas / 1 replica", two / one, "x", "> 1 (adds throughput)",
               two > one),
        Figure(7, f"drain of {count:,}, 2 workers on 1 replica", one_d.tasks_per_second,
               "tasks/s"),
        Figure(7, f"drain of {count:,}, 2 workers on 2 replicas", two_d.tasks_per_second,
               "tasks/s"),
        Figure(7, "drain, 2 replicas / 1 replica", two_d.tasks_per_second / one_d.tasks_per_second,
               "x", "> 1 (adds throughput)", two_d.tasks_per_second > one_d.tasks_per_second),
        Figure(7, f"drain of {count:,}, 2 workers, each on its own replica",
               own_d.tasks_per_second, "tasks/s"),
        Figure(7, "drain, 2 replicas (a worker each) / 1 replica",
               own_d.tasks_per_second / one_d.tasks_per_second, "x"),
        Figure(7, "drain: server CPU per task, 1 replica", one_d.server_cpu_ms, "ms"),
        Figure(7, "drain: server CPU per task, 2 replicas (summed)", two_d.server_cpu_ms, "ms"),
        Figure(7, "drain: MariaDB statements per task, 1 replica", one_d.statements, ""),
        Figure(7, "drain: MariaDB statements per task, 2 replicas", two_d.statements, ""),
        Figure(7, "drain: server CPU per task, 2 replicas, a worker each (summed)",
               own_d.server_cpu_ms, "ms"),
        Figure(7, "drain: MariaDB statements per task, 2 replicas, a worker each",
               own_d.statements, ""),
        # Whether the machine had cores left for a second replica to use.
        Figure(7, "drain: share of the machine's cores busy, 1 replica",
               one_d.machine_busy * 100, "%"),
        Figure(7, "drain: share of the machine's cores busy, 2 replicas (a worker each)",
               own_d.machine_busy * 100, "%"),
    ]  # fmt: skip
