"""How many MariaDB statements the hot paths send per task (issue 9's regression guard).

A real server on port 0 connects to MariaDB as a MariaDB user of its own, made for
the test; the statements it sends are read from that user's row of
information_schema.USER_STATISTICS (MariaDB's `userstat`, switched on at run
time), so other tests and other processes on the same MariaDB, which connect
as other users, do not move the count. Every statement counts: BEGIN, COMMIT,
SELECT, INSERT, UPDATE, and whatever a new pool connection sends to set itself
up (SELECT_COMMANDS + UPDATE_COMMANDS + OTHER_COMMANDS; COM_PING is not a
statement and is not counted).

The bounds are today's figures with some margin (docs/benchmarks.md): a change
that goes back to more round trips per task fails here; a change that batches
more lowers the bound in the same commit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pymysql
import pytest
from conftest import MYSQL, Running, StartServer
from streams import RawWorker
from waiting import eventually

from asyncflow.client import Client, TaskSpec
from asyncflow.config import Config, HttpConfig
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.worker import Job, Worker

pytestmark = [pytest.mark.mysql, pytest.mark.redis]

CREATES = 1000
DRAINED = 1000

# Statements per task for CreateTask calls in flight together. Main on 2026-11-26
# before group commit: 4.0 (BEGIN, the locked t_schedule_pos read, INSERT, COMMIT
# per task); with it (core/group.py): 0.5-0.7 (those four per batch). The bound
# leaves room for smaller batches on a loaded machine; per-task transactions fail it.
MAX_STATEMENTS_PER_CREATE = 1.5
# Statements per task for a backlog held and reported through a WorkTasks stream
# (the SDK Worker). Before group commit of claims and reports: 0.5-0.9; with it:
# 0.13-0.14 (one claim and one report transaction cover many tasks of every
# stream); with claims in autocommit (no BEGIN, locking read, COMMIT): 0.07-0.09.
# One task per transaction would be ~8.
MAX_STATEMENTS_PER_DRAINED_TASK = 0.3
# Statements per create handed off to a waiting stream (one by one, so no batching):
# BEGIN, the locked type read, INSERT, COMMIT (4) until the guarded INSERT ...
# SELECT learnt to lease the task itself in autocommit (1).
HANDED_OFF = 50
MAX_STATEMENTS_PER_HANDED_OFF_CREATE = 1.2
# Statements per one-by-one create with an idempotency key: BEGIN, the key row,
# the task row, COMMIT (4; 5 while the key was looked up before its insert).
KEYED = 50
MAX_STATEMENTS_PER_KEYED_CREATE = 4.2

COUNTED = "SELECT_COMMANDS + UPDATE_COMMANDS + OTHER_COMMANDS"


def root() -> pymysql.Connection:
    return pymysql.connect(**MYSQL, autocommit=True)


@pytest.fixture
def backend() -> str:
    return "mysql"


@dataclass(frozen=True)
class DbUser:
    name: str
    password: str


@pytest.fixture
def counted_user(mysql_database: str) -> Iterator[DbUser]:
    """A MariaDB user of this test alone, with every right on the test database."""
    user = DbUser(f"af_stmt_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex)
    conn = root()
    try:
        cur = conn.cursor()
        cur.execute("SET GLOBAL userstat = 1")  # per-user counters; harmless to leave on
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user.name, user.password))
        cur.execute(f"GRANT ALL ON `{mysql_database}`.* TO %s@'%%'", (user.name,))
        yield user
        cur.execute("DROP USER %s@'%%'", (user.name,))
    finally:
        conn.close()


def statements(user: DbUser) -> int:
    """Statements `user` has sent since it was made (0 before its first connection)."""
    conn = root()
    try:
        cur = conn.cursor()
        cur.execute(
            f"SELECT {COUNTED} FROM information_schema.USER_STATISTICS WHERE USER = %s",
            (user.name,),
        )
        row = cur.fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def status_count(database: str, task_type: str, status: int) -> int:
    """Tasks of `task_type` in `status`, over every task table of the type (a split may
    have made more than one). Read as root, so the test's own polling is not counted."""
    conn = root()
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = %s AND table_name LIKE %s",
            (database, f"t\\_{task_type}\\_task\\_%"),
        )
        total = 0
        for (table,) in cur.fetchall():
            cur.execute(f"SELECT COUNT(*) FROM `{database}`.`{table}` WHERE status = %s", (status,))
            total += int(cur.fetchone()[0])
        return total
    finally:
        conn.close()


@pytest.fixture
async def counted_server(
    start_server: StartServer, config: Config, counted_user: DbUser
) -> Running:
    """A server whose store connects as `counted_user`, with no periodic work of its own
    (no governance, as in every test; the queue depth counted once a day)."""
    user = counted_user
    store = replace(config.store, mysql_user=user.name, mysql_password=user.password)
    http = HttpConfig(port=0, queue_depth_interval_seconds=86_400)
    return await start_server(config, store=store, http=http)


async def test_concurrent_creates_stay_under_the_statement_bound(
    counted_server: Running, counted_user: DbUser, mysql_database: str
) -> None:
    stub = counted_server.stub
    await stub.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type="stmt"))
    before = statements(counted_user)
    replies = await asyncio.gather(
        *(stub.CreateTask(pb.CreateTaskRequest(task_type="stmt")) for _ in range(CREATES))
    )
    sent = statements(counted_user) - before
    assert len({reply.task.task_id for reply in replies}) == CREATES
    assert status_count(mysql_database, "stmt", pb.TASK_STATUS_PENDING) == CREATES
    assert sent > 0  # the counter sees this server's statements at all
    per_task = sent / CREATES
    print(f"{sent} statements for {CREATES} concurrent creates: {per_task:.2f} per task")
    assert per_task <= MAX_STATEMENTS_PER_CREATE


async def test_a_drained_backlog_stays_under_the_statement_bound(
    counted_server: Running, counted_user: DbUser, mysql_database: str
) -> None:
    async def noop(job: Job) -> None:
        return None

    async with Client(counted_server.address) as client:
        await client.register_type("stmt", schedule_limit=500)
        for _ in range(0, DRAINED, 500):
            await client.create_many([TaskSpec("stmt")] * 500)
        before = statements(counted_user)
        worker = Worker(counted_server.address, handlers={"stmt": noop}, concurrency=64,
                        prefetch=64)  # fmt: skip

        async def drained() -> bool:
            success = pb.TASK_STATUS_SUCCESS
            done = await asyncio.to_thread(status_count, mysql_database, "stmt", success)
            return done == DRAINED

        async with worker:
            await eventually(drained, within=120, what=f"{DRAINED} tasks SUCCESS")
        sent = statements(counted_user) - before
    assert sent > 0
    per_task = sent / DRAINED
    print(f"{sent} statements to hold and report {DRAINED} tasks: {per_task:.2f} per task")
    assert per_task <= MAX_STATEMENTS_PER_DRAINED_TASK


async def test_a_create_handed_off_to_a_waiting_stream_is_one_statement(
    counted_server: Running, counted_user: DbUser
) -> None:
    stub = counted_server.stub
    await stub.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type="stmt"))
    raw = RawWorker(stub)
    try:
        await raw.subscribe("stmt", window=HANDED_OFF)
        dispatcher = counted_server.server.dispatcher

        async def waits() -> bool:  # waiting, and no claim of its own in flight
            sessions = list(dispatcher.sessions.values())
            return dispatcher.hub.waiting("stmt") == 1 and sessions[0].claiming == 0

        await eventually(waits, what="the stream waiting")
        before = statements(counted_user)
        made = [await stub.CreateTask(pb.CreateTaskRequest(task_type="stmt"))
                for _ in range(HANDED_OFF)]  # fmt: skip
        sent = statements(counted_user) - before
        await raw.until(tasks=HANDED_OFF)
    finally:
        raw.cancel()
    assert {r.task.status for r in made} == {pb.TASK_STATUS_PROCESSING}  # all handed off
    per_task = sent / HANDED_OFF
    print(f"{sent} statements for {HANDED_OFF} handed-off creates: {per_task:.2f} per task")
    assert 0 < per_task <= MAX_STATEMENTS_PER_HANDED_OFF_CREATE


async def test_a_create_with_an_idempotency_key_is_one_transaction_of_two_inserts(
    counted_server: Running, counted_user: DbUser, mysql_database: str
) -> None:
    stub = counted_server.stub
    await stub.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type="stmt"))
    before = statements(counted_user)
    for n in range(KEYED):
        await stub.CreateTask(pb.CreateTaskRequest(task_type="stmt", idempotency_key=f"k{n}"))
    sent = statements(counted_user) - before
    again = await stub.CreateTask(pb.CreateTaskRequest(task_type="stmt", idempotency_key="k0"))
    assert not again.created  # the key still names the first task
    assert status_count(mysql_database, "stmt", pb.TASK_STATUS_PENDING) == KEYED
    per_task = sent / KEYED
    print(f"{sent} statements for {KEYED} keyed creates: {per_task:.2f} per task")
    assert 0 < per_task <= MAX_STATEMENTS_PER_KEYED_CREATE
