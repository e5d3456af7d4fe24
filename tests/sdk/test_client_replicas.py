"""Several replicas behind one address: calls and a Worker's streams spread over
them (gRPC's round_robin), and a replica killed with SIGKILL and restarted while
producers create with idempotency keys costs no call and duplicates no task."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from conftest import MYSQL, Running, StartServer, serve_env
from net import free_port
from producers import KINDS, Producer, close, open_client
from waiting import eventually

from asyncflow.client import Client, SyncClient, TaskSpec, TaskStatus
from asyncflow.clock import ManualClock
from asyncflow.config import Config
from asyncflow.worker import Job, Worker

CLOCKS = (1_800_000_000, 1_900_000_000)
"""Each in-process replica's clock: what a call returns tells which replica served it."""


@pytest.fixture
async def two(start_server: StartServer, config: Config) -> list[Running]:
    """Two replicas on one store (and, on MariaDB, one Redis)."""
    return [await start_server(config, clock_=ManualClock(start=at)) for at in CLOCKS]


def listing(replicas: list[Running]) -> str:
    return ",".join(replica.address for replica in replicas)


@pytest.mark.parametrize("kind", KINDS)
async def test_calls_land_on_every_replica_of_a_list(kind: str, two: list[Running]) -> None:
    client = open_client(kind, listing(two))
    producer = Producer(client)
    try:
        pings: Counter[int] = Counter()

        async def both_answered() -> bool:
            pings[await producer.ping()] += 1
            return set(pings) == set(CLOCKS)

        await eventually(both_answered, what="pings answered by both replicas")
        await producer.register_type("lark")
        created = [await producer.create("lark", idempotency_key=f"k{i}") for i in range(20)]
        by_replica = Counter(task.create_time for task in created)
        assert set(by_replica) == set(CLOCKS)  # round_robin: each replica created some
        assert by_replica[CLOCKS[0]] + by_replica[CLOCKS[1]] == 20
    finally:
        await close(client)


async def test_a_worker_opens_one_stream_per_replica(two: list[Running]) -> None:
    runs: Counter[str] = Counter()

    async def run(job: Job) -> None:
        runs[job.task_id] += 1

    async with Client(listing(two)) as client:
        await client.register_type("lark")
        async with Worker(listing(two), handlers={"lark": run}, concurrency=4) as worker:

            async def one_stream_each() -> bool:
                return [len(r.server.dispatcher.sessions) for r in two] == [1, 1]

            await eventually(one_stream_each, what="a stream on each replica")
            created = await client.create_many([TaskSpec("lark") for _ in range(60)])

            async def all_done() -> bool:
                return (await client.count("lark"))[TaskStatus.SUCCESS] == 60

            await eventually(all_done, within=60, what="every task run")
        assert worker.completed == 60
    assert runs == Counter({task.task_id: 1 for task in created})


@pytest.mark.parametrize("kind", KINDS)
async def test_a_dns_target_with_several_streams(kind: str, server: Running) -> None:
    """dns:///: gRPC looks the name up; a Worker's streams share one channel."""
    address = f"dns:///localhost:{server.server.port}"
    client = open_client(kind, address)
    try:
        producer = Producer(client)
        await producer.register_type("lark")
        created = await producer.create_many([TaskSpec("lark") for _ in range(30)])
        runs: Counter[str] = Counter()

        async def run(job: Job) -> None:
            runs[job.task_id] += 1

        async with Worker(address, handlers={"lark": run}, concurrency=6, streams=3):

            async def three_streams() -> bool:
                return len(server.server.dispatcher.sessions) == 3

            await eventually(three_streams, what="three streams")

            async def all_done() -> bool:
                return (await producer.count("lark"))[TaskStatus.SUCCESS] == 30

            await eventually(all_done, within=60, what="every task run")
        assert runs == Counter({task.task_id: 1 for task in created})
    finally:
        await close(client)


# -- a replica killed with SIGKILL and restarted ------------------------------

LISTENING = re.compile(r"asyncflow listening on ")


class Replica:
    """`asyncflow serve` on a fixed port, killed and restarted by the test."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env = {**env, "ASYNCFLOW_SERVER_PORT": str(port)}
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with self.current_log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).with_name("asyncflow")), "serve"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    async def listening(self) -> None:
        async def up() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, self.output()
            return LISTENING.search(self.output()) is not None

        await eventually(up, within=60, what=f"replica on port {self.port} listening")

    @property
    def current_log(self) -> Path:
        return self.log.with_name(f"{self.log.name}.{self.starts}.log")

    def output(self) -> str:
        return self.current_log.read_text(errors="replace")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture
def replica_env(config: Config) -> dict[str, str]:
    return serve_env(
        config,
        ASYNCFLOW_SERVER_SHUTDOWN_DELAY_SECONDS="0",  # no load balancer to wait for
        ASYNCFLOW_GOVERNANCE_ENABLED="false",
    )


@pytest.fixture
def replicas(replica_env: dict[str, str], tmp_path: Path) -> Iterator[list[Replica]]:
    started = [Replica(replica_env, free_port(), tmp_path / f"replica-{i}") for i in range(2)]
    yield started
    for replica in started:
        replica.stop()


def rows(database: str, table: str) -> int:
    conn = pymysql.connect(**MYSQL, database=database)
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM `{table}`")
        return int(cur.fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("backend", ["mysql"])
@pytest.mark.parametrize("count", [1, 2], ids=["one-replica", "two-replicas"])
async def test_a_replica_killed_and_restarted_costs_no_call_and_no_duplicate(
    count: int, replicas: list[Replica], config: Config
) -> None:
    """Producers create with keys through SyncClient (4 threads) and Client (4
    tasks) while a replica is killed with SIGKILL and restarted on its port. With
    two replicas the channel moves the calls to the survivor; with one they wait
    for it. Every call returns its task, and the store holds one task per key."""
    used = replicas[:count]
    for replica in used:
        replica.start()
    await asyncio.gather(*(replica.listening() for replica in used))
    address = ",".join(f"127.0.0.1:{replica.port}" for replica in used)
    created: dict[str, str] = {}
    failures: list[BaseException] = []
    stop = threading.Event()

    def record(key: str, task_id: str) -> None:
        assert task_id.startswith(f"{key}_"), (key, task_id)
        created[key] = task_id

    def produce_sync(client: SyncClient, name: str) -> None:
        i = 0
        while not stop.is_set():
            key = f"{name}-{i}"
            try:
                record(key, client.create("kill", idempotency_key=key).task_id)
            except BaseException as error:
                failures.append(error)
                return
            i += 1

    async def produce_async(client: Client, name: str) -> None:
        i = 0
        while not stop.is_set():
            key = f"{name}-{i}"
            record(key, (await client.create("kill", idempotency_key=key)).task_id)
            i += 1

    async def more(than: int) -> None:
        async def grown() -> bool:
            assert failures == []
            return len(created) >= than

        await eventually(grown, within=60, what=f"{than} tasks created")

    sync_client = SyncClient(address, timeout=60)
    async with Client(address, timeout=60) as async_client:
        await async_client.register_type("kill")
        threads = [
            threading.Thread(target=produce_sync, args=(sync_client, f"s{n}")) for n in range(4)
        ]
        for thread in threads:
            thread.start()
        producers = [asyncio.ensure_future(produce_async(async_client, f"a{n}")) for n in range(4)]
        try:
            await more(200)
            victim = used[-1]
            victim.kill()
            await more(len(created) + 200 if count == 2 else 0)
            victim.start()
            await victim.listening()
            await more(len(created) + 400)
        finally:
            stop.set()
            await asyncio.gather(*producers)
            for thread in threads:
                await asyncio.to_thread(thread.join, 60)
            sync_client.close()
    assert failures == []
    assert len(set(created.values())) == len(created)
    database = config.store.mysql_database
    assert rows(database, "t_kill_task_1") == rows(database, "t_task_key") == len(created)
