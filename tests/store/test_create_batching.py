"""Group commit of creates on the real backends (core/group.py, the stores' insert path).

Concurrent CreateTask calls share one transaction. These tests pin what that
must not change: a duplicate idempotency key or an unregistered type fails only
its own caller; a transaction that fails fails every caller of its batch and
writes nothing; a cancelled caller harms no one (its task is created if its
batch had started, else never); and creates racing table splits and begin
advances never land in a table the holds no longer scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from conftest import BACKENDS, MYSQL, open_store

from asyncflow.cache.memory import MemoryTaskCache
from asyncflow.clock import ManualClock
from asyncflow.core.ids import task_table
from asyncflow.core.model import (
    CreateRequest,
    Success,
    Task,
    TaskFilter,
    TaskStatus,
    TypeSettings,
)
from asyncflow.core.ports import TaskStore
from asyncflow.core.service import TaskCore
from asyncflow.errors import TaskTypeNotFound
from asyncflow.store.mysql import MysqlStore
from asyncflow.store.sqlite import SqliteStore


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path, mysql_database: str
                ) -> AsyncIterator[TaskStore]:  # fmt: skip
    opened = await open_store(request.param, tmp_path, mysql_database)
    await opened.migrate()
    yield opened
    await opened.close()


@pytest.fixture
def core(store: TaskStore) -> TaskCore:
    return TaskCore(store, MemoryTaskCache(), ManualClock())


def record_batches(store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every task_insert_many call from now on."""
    sizes: list[int] = []
    real = store.task_insert_many

    async def recorded(tasks: list[Any], now: int) -> list[Task | str]:
        sizes.append(len(tasks))
        return await real(tasks, now)

    monkeypatch.setattr(store, "task_insert_many", recorded)
    return sizes


def gate_inserts(store: TaskStore, monkeypatch: pytest.MonkeyPatch
                 ) -> tuple[asyncio.Event, asyncio.Event]:  # fmt: skip
    """(started, release): every insert sets `started`, then waits for `release`."""
    started, release = asyncio.Event(), asyncio.Event()
    real = store.task_insert_many

    async def gated(tasks: list[Any], now: int) -> list[Task | str]:
        started.set()
        await release.wait()
        return await real(tasks, now)

    monkeypatch.setattr(store, "task_insert_many", gated)
    return started, release


async def all_tasks(store: TaskStore, task_type: str) -> list[Task]:
    config = await store.type_get(task_type)
    assert config is not None
    return await store.task_list(config, TaskFilter(), None, 10_000)


async def test_a_used_key_in_a_batch_answers_only_its_caller(
    core: TaskCore, store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await core.register_type(TypeSettings("lark"))
    first, created = await core.create_task(CreateRequest("lark", idempotency_key="k1"))
    assert created
    sizes = record_batches(store, monkeypatch)

    results = await asyncio.gather(
        *(core.create_task(CreateRequest("lark", context=f"good {i}")) for i in range(8)),
        core.create_task(CreateRequest("lark", idempotency_key="k1", context="again")),
        core.create_task(CreateRequest("lark", idempotency_key="k2", context="twin a")),
        core.create_task(CreateRequest("lark", idempotency_key="k2", context="twin b")),
    )

    assert sizes == [11]  # one group commit
    goods, (again, again_created), twin_a, twin_b = results[:8], results[8], results[9], results[10]
    assert all(new for _, new in goods)
    assert sorted(t.context for t, _ in goods) == sorted(f"good {i}" for i in range(8))
    assert not again_created
    assert again.task_id == first.task_id
    assert again.context == ""
    # A key given twice in one batch: the first creates, the second gets that task.
    assert twin_a[1]
    assert not twin_b[1]
    assert twin_a[0].task_id == twin_b[0].task_id
    assert twin_b[0].context == "twin a"
    stored = {t.task_id: t for t in await all_tasks(store, "lark")}
    assert len(stored) == 1 + 8 + 1
    for task, _ in results:
        assert stored[task.task_id] == task  # what the caller got is what was written


async def test_an_unregistered_type_fails_only_its_callers(
    core: TaskCore, store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await core.register_type(TypeSettings("lark"))
    sizes = record_batches(store, monkeypatch)
    results = await asyncio.gather(
        core.create_task(CreateRequest("lark")),
        core.create_task(CreateRequest("nope")),
        core.create_task(CreateRequest("lark")),
        return_exceptions=True,
    )
    assert isinstance(results[1], TaskTypeNotFound)
    assert all(isinstance(r, tuple) and r[1] for r in (results[0], results[2]))
    assert sizes[0] == 3
    assert len(await all_tasks(store, "lark")) == 2


def drop_table(store: TaskStore, tmp_path: Path, database: str, table: str) -> None:
    """Drop a task table behind the store's back: its next insert there fails."""
    if isinstance(store, SqliteStore):
        conn = sqlite3.connect(tmp_path / "asyncflow.db")
        conn.execute(f"DROP TABLE {table}")
        conn.close()
        return
    conn = pymysql.connect(**MYSQL, database=database, autocommit=True)
    try:
        conn.cursor().execute(f"DROP TABLE {table}")
    finally:
        conn.close()


async def test_a_failed_transaction_fails_every_caller_and_writes_nothing(
    core: TaskCore, store: TaskStore, tmp_path: Path, mysql_database: str
) -> None:
    await core.register_type(TypeSettings("lark"))
    await core.register_type(TypeSettings("wren"))
    # Types are written in name order: lark's rows go in before wren's insert fails.
    drop_table(store, tmp_path, mysql_database, task_table("wren", 1))

    results = await asyncio.gather(
        *(core.create_task(CreateRequest("lark", context=str(i))) for i in range(5)),
        core.create_task(CreateRequest("lark", idempotency_key="kept")),
        core.create_task(CreateRequest("wren")),
        return_exceptions=True,
    )

    assert all(isinstance(r, Exception) for r in results), results
    assert len({type(r) for r in results}) == 1  # the same error for every caller
    assert await all_tasks(store, "lark") == []  # nothing half-written
    # The key was not kept either: it creates now.
    _, created = await core.create_task(CreateRequest("lark", idempotency_key="kept"))
    assert created


async def test_a_cancelled_caller_harms_no_one(
    core: TaskCore, store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defined behaviour: cancelled once its batch's flush started, the task is
    created (the caller just never hears of it); cancelled while still queued,
    it is never created. Either way the others are answered as usual."""
    await core.register_type(TypeSettings("lark"))
    started, release = gate_inserts(store, monkeypatch)

    def create(name: str) -> asyncio.Task[tuple[Task, bool]]:
        return asyncio.create_task(core.create_task(CreateRequest("lark", context=name)))

    flushing = [create(f"in flight {i}") for i in range(4)]
    await started.wait()  # the first batch is being written
    queued = [create(f"queued {i}") for i in range(3)]
    for victim in (flushing[1], queued[1]):
        victim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await victim
    release.set()
    answered = await asyncio.gather(*flushing[:1], *flushing[2:], *queued[:1], *queued[2:])

    assert all(created for _, created in answered)
    stored = {t.context for t in await all_tasks(store, "lark")}
    assert stored == {"in flight 0", "in flight 1", "in flight 2", "in flight 3",
                      "queued 0", "queued 2"}  # fmt: skip


async def second_store(store: TaskStore, tmp_path: Path, database: str) -> TaskStore:
    """Another store on the same database: another replica's view."""
    if isinstance(store, SqliteStore):
        return await SqliteStore.open(str(tmp_path / "asyncflow.db"))
    return await MysqlStore.open(**MYSQL, database=database)


async def test_creates_racing_splits_and_begin_advances_are_never_orphaned(
    core: TaskCore, store: TaskStore, tmp_path: Path, mysql_database: str
) -> None:
    """One replica creates (its insert target goes stale), another splits the
    table and advances begin_pos as fast as it can, a holder drains; every
    acknowledged task must be held in the end, so none landed in a table that
    holds no longer scan."""
    await core.register_type(TypeSettings("lark", schedule_limit=500))
    other = await second_store(store, tmp_path, mysql_database)
    created: set[str] = set()
    held: set[str] = set()
    producing = True
    splits = advances = 0

    async def producer() -> None:
        nonlocal producing
        wave = 0
        # Until the race was run (5 begin advances under way), with a deadline:
        # how many waves that takes depends on how fast creates are against
        # the holder and the governor (300 waves were once too few on SQLite).
        deadline = time.monotonic() + 60
        while wave < 30 or (advances < 5 and time.monotonic() < deadline):
            wave += 1
            tasks = await asyncio.gather(
                *(core.create_task(CreateRequest("lark", context=f"{wave}")) for _ in range(20))
            )
            created.update(t.task_id for t, _ in tasks)
        producing = False

    async def governor() -> None:
        nonlocal splits, advances
        clock = ManualClock()
        while producing:
            config = await other.type_get("lark")
            assert config is not None
            splits += await other.pos_split(config, clock.now())
            config = await other.type_get("lark")
            assert config is not None
            while config.begin_pos < config.end_pos and await other.pos_advance_begin(
                config, clock.now()
            ):
                advances += 1
                config = await other.type_get("lark")
                assert config is not None

    async def holder() -> None:
        while producing or held != created:
            tasks = await core.hold_tasks("lark", 500)
            held.update(t.task_id for t in tasks)
            await asyncio.gather(
                *(core.set_task(t.task_id, t.lease_token, Success()) for t in tasks)
            )
            if not tasks:
                await asyncio.sleep(0.01)  # an idle holder's back-off, not a synchronisation

    try:
        await asyncio.wait_for(asyncio.gather(producer(), governor(), holder()), 120)
    finally:
        await other.close()

    assert held == created
    assert splits > 1
    assert advances >= 5
    config = await store.type_get("lark")
    assert config is not None
    counts = await store.task_count(config)
    assert counts[TaskStatus.SUCCESS] == len(created)


@pytest.mark.parametrize("returning", [True, False], ids=["returning", "read-back"])
async def test_mysql_insert_reports_the_rows_it_wrote(
    tmp_path: Path, mysql_database: str, returning: bool
) -> None:
    """MariaDB returns the new rows from the INSERT; MySQL reads them back: both
    must hand the core exactly the rows stored (ids included)."""
    store = await open_store("mysql", tmp_path, mysql_database)
    assert isinstance(store, MysqlStore)
    await store.migrate()
    store._returning = returning  # this server is MariaDB; the MySQL path runs here too
    try:
        core = TaskCore(store, MemoryTaskCache(), ManualClock())
        await core.register_type(TypeSettings("lark", max_retry_num=9))
        one, _ = await core.create_task(CreateRequest("lark", context="one"))
        keyed, _ = await core.create_task(CreateRequest("lark", idempotency_key="k"))
        many = await core.create_tasks([CreateRequest("lark", context=str(i)) for i in range(5)])
        for task in [one, keyed, *(t for t, _ in many)]:
            assert task.max_retry_num == 9
            assert await store.task_get("lark", task.pos, task.task_id) == task
    finally:
        await store.close()


async def test_a_key_naming_a_task_created_without_one_fails_only_its_caller(
    core: TaskCore, store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is the uuid of a task created without a key: its task id is
    taken, so the batch's multi-row insert fails and goes row by row."""
    await core.register_type(TypeSettings("lark"))
    plain, _ = await core.create_task(CreateRequest("lark", context="plain"))
    sizes = record_batches(store, monkeypatch)
    taken = plain.task_id.split("_")[0]
    results = await asyncio.gather(
        core.create_task(CreateRequest("lark", context="a")),
        core.create_task(CreateRequest("lark", idempotency_key=taken, context="clash")),
        core.create_task(CreateRequest("lark", idempotency_key="fresh", context="b")),
    )
    assert sizes == [3]
    (_, a_new), (clash, clash_new), (_, b_new) = results
    assert a_new
    assert b_new
    assert not clash_new
    assert clash == plain
    assert {t.context for t in await all_tasks(store, "lark")} == {"plain", "a", "b"}
