"""The store contract: every TaskStore backend must pass this suite (SQLite and MariaDB)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pymysql
import pytest
from conftest import BACKENDS, MYSQL
from fakes import FakeStore

from asyncflow.core.model import (
    CatchUp,
    Claim,
    PageCursor,
    RetryPolicy,
    RetryStrategy,
    Schedule,
    Task,
    TaskChange,
    TaskFilter,
    TaskInsert,
    TaskStatus,
    TaskTemplate,
    TaskTypeConfig,
)
from asyncflow.core.ports import TaskStore
from asyncflow.core.service import DEFAULT_TYPE
from asyncflow.errors import ScheduleAlreadyExists, TaskTypeNotFound, Unavailable
from asyncflow.store.mysql import MysqlStore
from asyncflow.store.sqlite import SqliteStore

NOW = 1_800_000_000


def lark(**changes: object) -> TaskTypeConfig:
    return replace(DEFAULT_TYPE, task_type="lark", **changes)  # type: ignore[arg-type]


async def registered(store: TaskStore, **changes: object) -> TaskTypeConfig:
    return await store.type_upsert(lark(**changes), NOW)


def new_task(
    config: TaskTypeConfig, *, order_time: int = NOW, key: str | None = None, **changes: object
) -> TaskInsert:
    task = TaskInsert(
        task_type=config.task_type,
        user_id="u1",
        task_stage="first",
        priority=0,
        context="ctx",
        order_time=order_time,
        idempotency_key=key,
    )
    return replace(task, **changes)  # type: ignore[arg-type]


async def insert(store: TaskStore, task: TaskInsert, now: int = NOW) -> Task:
    (inserted,) = await store.task_insert_many([task], now)
    assert isinstance(inserted, Task), f"not inserted: {inserted}"
    return inserted


async def in_two_tables(store: TaskStore, per_table: int) -> TaskTypeConfig:
    """lark with `per_table` pending tasks in table 1 and as many in table 2 (after
    a split); its config as it is then."""
    config = await registered(store)
    for _ in range(per_table):
        await insert(store, new_task(config), NOW)
    assert await store.pos_split(config, NOW)
    split = await store.type_get("lark")
    assert split is not None
    for _ in range(per_table):
        await insert(store, new_task(split), NOW)
    return split


def claim(token: str = "tok", now: int = NOW, deadline: int = NOW + 30) -> Claim:
    return Claim(token=token, deadline=deadline, now=now)


async def test_migrate_is_idempotent(store: TaskStore) -> None:
    assert await store.migrate() == []


@pytest.fixture(params=[*BACKENDS, pytest.param("fake", id="fake")])
async def unmigrated(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    """A store on an empty database: no migration applied yet."""
    if request.param == "fake":
        yield FakeStore()
        return
    if request.param == "sqlite":
        store: TaskStore = await SqliteStore.open(str(tmp_path / "empty.db"))
        yield store
        await store.close()
        return
    database = f"asyncflow_empty_{uuid.uuid4().hex[:10]}"
    store = await MysqlStore.open(**MYSQL, database=database)
    try:
        yield store
    finally:
        await store.close()
        conn = pymysql.connect(**MYSQL)
        try:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")
        finally:
            conn.close()


async def test_schema_ready_once_every_migration_is_applied(unmigrated: TaskStore) -> None:
    store = unmigrated
    assert await store.schema_ready() is False
    await store.migrate()
    assert await store.schema_ready() is True
    await store.close()
    with pytest.raises(Unavailable):
        await store.schema_ready()


async def test_pool_usage_counts_connections_without_a_query(store: TaskStore) -> None:
    await store.type_list()
    usage = store.pool_usage()
    assert usage.in_use == 0  # nothing runs between two awaits
    assert 0 <= usage.open <= usage.limit


async def test_type_upsert_creates_then_updates_without_moving_positions(
    store: TaskStore,
) -> None:
    config = await registered(store)
    assert (config.begin_pos, config.end_pos) == (1, 1)
    assert config.create_time == NOW
    assert await store.pos_split(config, NOW)
    updated = await store.type_upsert(lark(schedule_limit=7), NOW + 5)
    assert updated.schedule_limit == 7
    assert (updated.begin_pos, updated.end_pos) == (1, 2)
    assert (updated.create_time, updated.modify_time) == (NOW, NOW + 5)
    assert await store.type_get("lark") == updated
    assert await store.type_get("nope") is None


async def test_type_list_is_sorted(store: TaskStore) -> None:
    for name in ("zeta", "alpha", "mid"):
        await store.type_upsert(replace(DEFAULT_TYPE, task_type=name), NOW)
    assert [c.task_type for c in await store.type_list()] == ["alpha", "mid", "zeta"]


async def test_uniform_retry_policy_round_trips(store: TaskStore) -> None:
    policy = RetryPolicy(RetryStrategy.UNIFORM, interval=9, max_interval=50)
    config = await registered(store, retry=policy)
    assert config.retry == policy
    task = await insert(store, new_task(config), NOW)
    assert task.retry == policy


async def test_insert_then_get(store: TaskStore) -> None:
    config = await registered(store)
    inserted = await insert(store, new_task(config, priority=5, order_time=NOW - 5), NOW)
    assert inserted.status is TaskStatus.PENDING
    assert (inserted.version, inserted.hold_count, inserted.crt_retry_num) == (1, 0, 0)
    assert await store.task_get("lark", 1, inserted.task_id) == inserted


async def test_get_missing_task_or_table_is_none(store: TaskStore) -> None:
    await registered(store)
    assert await store.task_get("lark", 1, "x_lark_1") is None
    assert await store.task_get("lark", 42, "x_lark_42") is None
    assert await store.task_get("ghost", 1, "x_ghost_1") is None


async def test_insert_places_tasks_in_the_end_table_with_the_type_settings(
    store: TaskStore,
) -> None:
    config = await registered(store, max_retry_num=9)
    first = await insert(store, new_task(config, key="k1"), NOW)
    assert (first.task_id, first.pos, first.max_retry_num) == ("k1_lark_1", 1, 9)
    assert first.retry == config.retry
    assert await store.pos_split(config, NOW)
    second = await insert(store, new_task(config), NOW)
    assert second.pos == 2
    assert second.task_id.endswith("_lark_2")
    ghost = replace(new_task(config), task_type="gh")
    with pytest.raises(TaskTypeNotFound):
        await store.task_insert_many([new_task(config), ghost], NOW)
    now_config = await store.type_get("lark")
    assert now_config is not None
    assert sum((await store.task_count(now_config)).values()) == 2  # the failed batch added none


async def test_insert_many_keeps_order_and_reports_taken_keys(store: TaskStore) -> None:
    config = await registered(store)
    results = await store.task_insert_many(
        [new_task(config, key="a"), new_task(config), new_task(config, key="a"),
         new_task(config, key="b")],
        NOW,
    )  # fmt: skip
    first, second, again, last = results
    assert isinstance(first, Task)
    assert isinstance(second, Task)
    assert isinstance(last, Task)
    assert again == first.task_id
    assert first.row_id < second.row_id < last.row_id  # request order is queue order


async def test_idempotency_key_refuses_second_task(store: TaskStore) -> None:
    config = await registered(store)
    first = await insert(store, new_task(config, key="order-1"), NOW)
    await store.pos_split(config, NOW)
    moved = await store.type_get("lark")
    assert moved is not None
    assert await store.task_insert_many([new_task(moved, key="order-1")], NOW) == [first.task_id]
    counts = await store.task_count(moved)
    assert sum(counts.values()) == 1


async def test_claim_takes_due_tasks_oldest_first(store: TaskStore) -> None:
    config = await registered(store)
    late = await insert(store, new_task(config, order_time=NOW + 10), NOW)
    second = await insert(store, new_task(config, order_time=NOW - 1), NOW)
    first = await insert(store, new_task(config, order_time=NOW - 100), NOW)
    held = await store.task_claim_due(config, 10, claim())
    assert [t.task_id for t in held] == [first.task_id, second.task_id]
    for task in held:
        assert task.status is TaskStatus.PROCESSING
        assert (task.lease_token, task.lease_deadline, task.hold_count) == ("tok", NOW + 30, 1)
        assert task.version == 2
        assert await store.task_get("lark", 1, task.task_id) == task
    assert await store.task_claim_due(config, 10, claim("other")) == []
    later = await store.task_claim_due(config, 10, claim("later", now=NOW + 10))
    assert [t.task_id for t in later] == [late.task_id]


async def test_claim_many_deals_the_oldest_to_each_hold_in_turn(store: TaskStore) -> None:
    """Several streams' holds in one transaction: each its own lease, the oldest
    left up to its limit and its byte budget (the first task always)."""
    config = await registered(store)
    made = [await insert(store, new_task(config, order_time=NOW - 10 + i, context=f"{i}" * 900))
            for i in range(4)]  # fmt: skip
    assert await store.pos_split(config, NOW)
    config = await store.type_get("lark")
    assert config is not None
    made += [await insert(store, new_task(config, order_time=NOW - 5 + i)) for i in range(4)]
    # Oldest first: made[0..3] (900-byte contexts), made[4..7] (small, newer table).
    one, two, three, four = await store.task_claim_due_many(
        config,
        [(1, claim("a")), (3, replace(claim("b"), max_bytes=2000)), (2, claim("c")),
         (5, claim("d"))],
    )  # fmt: skip
    assert [t.task_id for t in one] == [made[0].task_id]
    assert [t.task_id for t in two] == [made[1].task_id]  # the second would not fit
    assert [t.task_id for t in three] == [made[2].task_id, made[3].task_id]
    assert [t.task_id for t in four] == [t.task_id for t in made[4:]]
    for token, held in zip("abcd", (one, two, three, four), strict=True):
        for task in held:
            assert task.lease_token == token
            assert task == await store.task_get("lark", task.pos, task.task_id)
    assert await store.task_claim_due_many(config, [(5, claim("e"))]) == [[]]


async def test_claim_respects_limit(store: TaskStore) -> None:
    config = await registered(store)
    for _ in range(5):
        await insert(store, new_task(config), NOW)
    assert len(await store.task_claim_due(config, 3, claim())) == 3
    assert len(await store.task_claim_due(config, 3, claim("b"))) == 2


async def test_claim_orders_across_tables_without_head_of_line_block(store: TaskStore) -> None:
    """A not-yet-due task in the old table must not hide due tasks in newer ones."""
    config = await registered(store)
    blocked = await insert(store, new_task(config, order_time=NOW + 3600), NOW)
    assert await store.pos_split(config, NOW)
    config = await store.type_get("lark")
    assert config is not None
    newer = await insert(store, new_task(config, order_time=NOW - 5), NOW)
    assert await store.pos_split(config, NOW)
    config = await store.type_get("lark")
    assert config is not None
    assert config.end_pos == 3
    newest = await insert(store, new_task(config, order_time=NOW - 50), NOW)
    held = await store.task_claim_due(config, 10, claim())
    assert [(t.task_id, t.pos) for t in held] == [(newest.task_id, 3), (newer.task_id, 2)]
    assert blocked.pos == 1


async def test_concurrent_claims_are_disjoint(store: TaskStore) -> None:
    config = await registered(store)
    for _ in range(60):
        await insert(store, new_task(config), NOW)
    batches = await asyncio.gather(
        *(store.task_claim_due(config, 7, claim(f"t{i}")) for i in range(12))
    )
    ids = [t.task_id for batch in batches for t in batch]
    assert len(ids) == len(set(ids)) == 60


async def test_insert_handed_off_is_leased_unless_paused_or_not_due(store: TaskStore) -> None:
    """A hand-off inserts the task already held; the type's paused flag and the
    task's run time are checked in the insert's own transaction."""
    config = await registered(store, max_processing_time=40)
    handed = await insert(store, new_task(config, lease_token="hand"), NOW)
    assert (handed.status, handed.lease_token, handed.hold_count, handed.lease_deadline) == (
        TaskStatus.PROCESSING, "hand", 1, NOW + 40,
    )  # fmt: skip
    assert handed == await store.task_get("lark", 1, handed.task_id)
    later = await insert(store, new_task(config, lease_token="hand", order_time=NOW + 5), NOW)
    await store.type_set_paused("lark", True, NOW)
    paused = await insert(store, new_task(config, lease_token="hand"), NOW)
    for task in (later, paused):
        assert (task.status, task.lease_token, task.hold_count) == (TaskStatus.PENDING, "", 0)
        assert task == await store.task_get("lark", 1, task.task_id)
    # The handed-off lease is an ordinary one: its report is fenced by it.
    done = TaskChange(TaskStatus.SUCCESS, "first", "done", 0, NOW, "")
    assert await store.task_update_leased_many([(handed, "other", done)], NOW + 1) == [None]
    (reported,) = await store.task_update_leased_many([(handed, "hand", done)], NOW + 1)
    assert reported is not None
    assert reported.status is TaskStatus.SUCCESS


async def test_update_leased_needs_token_version_and_processing(store: TaskStore) -> None:
    config = await registered(store)
    await insert(store, new_task(config), NOW)
    (held,) = await store.task_claim_due(config, 1, claim())
    change = TaskChange(TaskStatus.PENDING, "second", "new-ctx", 0, NOW + 1, '{"x":1}')
    assert await store.task_update_leased_many(
        [(held, "wrong", change), (replace(held, version=1), "tok", change)], NOW + 1
    ) == [None, None]
    (updated,) = await store.task_update_leased_many([(held, "tok", change)], NOW + 1)
    assert updated is not None
    assert updated == await store.task_get("lark", 1, held.task_id)
    assert (updated.status, updated.task_stage, updated.context) == (
        TaskStatus.PENDING,
        "second",
        "new-ctx",
    )
    assert (updated.lease_token, updated.lease_deadline, updated.version) == ("", 0, 3)
    assert updated.schedule_log == '{"x":1}'
    # Not processing any more: the same lease cannot write again.
    assert await store.task_update_leased_many([(updated, "tok", change)], NOW + 2) == [None]


async def test_get_many_reads_across_tables(store: TaskStore) -> None:
    config = await registered(store)
    first = await insert(store, new_task(config))
    assert await store.pos_split(config, NOW)
    second = await insert(store, new_task(config))
    found = await store.task_get_many(
        [("lark", 1, first.task_id), ("lark", 2, second.task_id), ("lark", 1, "x_lark_1"),
         ("lark", 9, "x_lark_9")]
    )  # fmt: skip
    assert found == {first.task_id: first, second.task_id: second}


async def test_list_expired_finds_only_leases_past_their_deadline(store: TaskStore) -> None:
    config = await registered(store)
    for _ in range(3):
        await insert(store, new_task(config), NOW)
    await store.task_claim_due(config, 1, claim("early", deadline=NOW + 10))
    await store.task_claim_due(config, 1, claim("late", deadline=NOW + 30))
    assert await store.task_list_expired(config, NOW + 10, 100) == []  # not yet past
    (early,) = await store.task_list_expired(config, NOW + 11, 100)
    assert (early.lease_token, early.status) == ("early", TaskStatus.PROCESSING)
    both = await store.task_list_expired(config, NOW + 31, 100)
    assert [t.lease_token for t in both] == ["early", "late"]  # earliest deadline first
    assert both == [await store.task_get("lark", 1, t.task_id) for t in both]  # a plain read


async def test_list_expired_is_bounded_per_table_and_scans_live_tables(store: TaskStore) -> None:
    config = await in_two_tables(store, 3)
    await store.task_claim_due(config, 6, claim())
    expired = await store.task_list_expired(config, NOW + 31, 2)
    assert sorted(t.pos for t in expired) == [1, 1, 2, 2]


async def test_update_leased_applies_a_batch_across_tables(store: TaskStore) -> None:
    """Stuck recovery's write: many tasks, two tables, one call; each fenced alone."""
    config = await registered(store)
    await insert(store, new_task(config), NOW)
    await insert(store, new_task(config), NOW)
    assert await store.pos_split(config, NOW)
    config = await store.type_get("lark")
    assert config is not None
    await insert(store, new_task(config), NOW)
    held = await store.task_claim_due(config, 3, claim())
    assert len(held) == 3
    change = TaskChange(TaskStatus.PENDING, "first", "ctx", 1, NOW + 50, '{"y":2}')
    stale = replace(held[1], version=held[1].version - 1)
    results = await store.task_update_leased_many(
        [(held[0], "tok", change), (stale, "tok", change), (held[2], "tok", change),
         (held[0], "tok", change)],
        NOW + 40,
    )  # fmt: skip
    assert [r is not None for r in results] == [True, False, True, False]  # a task once
    for task in (held[0], held[2]):
        now = await store.task_get("lark", task.pos, task.task_id)
        assert now is not None
        assert (now.status, now.crt_retry_num, now.order_time) == (TaskStatus.PENDING, 1, NOW + 50)
        assert (now.lease_token, now.version, now.modify_time) == ("", task.version + 1, NOW + 40)
        assert now in results
    untouched = await store.task_get("lark", held[1].pos, held[1].task_id)
    assert untouched == held[1]


async def test_update_leased_batch_with_one_stale_lease_applies_the_others(
    store: TaskStore,
) -> None:
    """Distinct tasks over two tables, one under a lease that is no longer its own
    (MariaDB tries the batch unlocked first, then finds out which still hold)."""
    config = await in_two_tables(store, 2)
    held = await store.task_claim_due(config, 4, claim())
    done = TaskChange(TaskStatus.SUCCESS, "first", "done", 0, NOW, "")
    results = await store.task_update_leased_many(
        [(task, "stale" if i == 2 else "tok", done) for i, task in enumerate(held)], NOW + 1
    )
    assert [r is not None for r in results] == [True, True, False, True]
    assert await store.task_get("lark", held[2].pos, held[2].task_id) == held[2]
    for task, result in zip(held, results, strict=True):
        if result is not None:
            assert await store.task_get("lark", task.pos, task.task_id) == result


async def test_update_leased_applies_a_batch_larger_than_one_statement(store: TaskStore) -> None:
    """1100 updates with 4 KiB contexts: more rows and bytes than one multi-row statement takes."""
    config = await registered(store, schedule_limit=1000)
    await store.task_insert_many([new_task(config) for _ in range(1100)], NOW)
    held = await store.task_claim_due(config, 1100, claim())
    changes = [
        (task, "tok", TaskChange(TaskStatus.SUCCESS, "first", f"{i:04d}" * 1024, 0, NOW, ""))
        for i, task in enumerate(held)
    ]
    results = await store.task_update_leased_many(changes, NOW + 1)
    assert all(r is not None for r in results)
    assert (await store.task_count(config))[TaskStatus.SUCCESS] == 1100
    last = await store.task_get("lark", 1, held[-1].task_id)
    assert last is not None
    assert last.context == "1099" * 1024


async def test_update_leased_loses_to_a_write_in_between(store: TaskStore) -> None:
    """Recovery reads expired leases, then writes: a report that lands in between wins."""
    config = await registered(store)
    for _ in range(2):
        await insert(store, new_task(config), NOW)
    await store.task_claim_due(config, 2, claim())
    expired = await store.task_list_expired(config, NOW + 31, 100)
    done = TaskChange(TaskStatus.SUCCESS, "first", "done", 0, NOW, "")
    (reported,) = await store.task_update_leased_many([(expired[0], "tok", done)], NOW + 31)
    assert reported is not None
    requeue = TaskChange(TaskStatus.PENDING, "first", "ctx", 1, NOW + 40, "")
    results = await store.task_update_leased_many(
        [(task, task.lease_token, requeue) for task in expired], NOW + 32
    )
    assert results[0] is None
    assert results[1] is not None
    assert await store.task_get("lark", 1, expired[0].task_id) == reported


async def test_list_filters_and_pages_across_tables(store: TaskStore) -> None:
    config = await registered(store)
    made: list[Task] = []
    for i in range(5):
        made.append(await insert(store, new_task(config, user_id=f"u{i % 2}"), NOW))
    assert await store.pos_split(config, NOW)
    config = await store.type_get("lark")
    assert config is not None
    for i in range(5):
        made.append(await insert(store, new_task(config, user_id=f"u{i % 2}"), NOW))
    pages: list[list[Task]] = []
    after: PageCursor | None = None
    while True:
        page = await store.task_list(config, TaskFilter(), after, 4)
        if not page:
            break
        pages.append(page)
        after = PageCursor(page[-1].pos, page[-1].row_id)
    assert [len(p) for p in pages] == [4, 4, 2]
    assert [t.task_id for p in pages for t in p] == [t.task_id for t in made]
    only_u1 = await store.task_list(config, TaskFilter(user_id="u1"), None, 100)
    assert [t.task_id for t in only_u1] == [t.task_id for t in made if t.user_id == "u1"]
    await store.task_claim_due(config, 3, claim())
    processing = await store.task_list(
        config, TaskFilter(status=TaskStatus.PROCESSING, task_stage="first"), None, 100
    )
    assert len(processing) == 3
    assert await store.task_list(config, TaskFilter(task_stage="other"), None, 100) == []


async def test_count_by_status_over_all_tables(store: TaskStore) -> None:
    config = await registered(store)
    for _ in range(3):
        await insert(store, new_task(config), NOW)
    assert await store.pos_split(config, NOW)
    config = await store.type_get("lark")
    assert config is not None
    for _ in range(2):
        await insert(store, new_task(config), NOW)
    await store.task_claim_due(config, 1, claim())
    counts = await store.task_count(config)
    assert counts == {
        TaskStatus.PENDING: 4,
        TaskStatus.PROCESSING: 1,
        TaskStatus.SUCCESS: 0,
        TaskStatus.FAILED: 0,
        TaskStatus.CANCELLED: 0,
    }


async def test_pos_split_is_conditional(store: TaskStore) -> None:
    config = await registered(store)
    results = await asyncio.gather(*(store.pos_split(config, NOW) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    moved = await store.type_get("lark")
    assert moved is not None
    assert (moved.begin_pos, moved.end_pos) == (1, 2)
    # The new table is usable right away.
    task = await insert(store, new_task(moved), NOW)
    assert task.pos == 2


async def finish(store: TaskStore, config: TaskTypeConfig, now: int = NOW) -> None:
    """Hold every due task of the type and report it done."""
    held = await store.task_claim_due(config, 1000, claim("fin", now=now, deadline=now + 30))
    done = [(t, "fin", TaskChange(TaskStatus.SUCCESS, t.task_stage, t.context, 0, t.order_time,
                                  "")) for t in held]  # fmt: skip
    assert None not in await store.task_update_leased_many(done, now)


async def split(store: TaskStore, config: TaskTypeConfig) -> TaskTypeConfig:
    assert await store.pos_split(config, NOW)
    moved = await store.type_get(config.task_type)
    assert moved is not None
    return moved


async def test_pos_advance_begin_only_past_a_finished_table(store: TaskStore) -> None:
    config = await registered(store)
    await insert(store, new_task(config), NOW)
    assert not await store.pos_advance_begin(config, NOW)  # begin == end
    config = await split(store, config)
    await insert(store, new_task(config), NOW)
    assert not await store.pos_advance_begin(config, NOW)  # table 1 has a pending task
    await finish(store, config)
    results = await asyncio.gather(*(store.pos_advance_begin(config, NOW + 1) for _ in range(4)))
    assert sorted(results) == [False, False, False, True]
    moved = await store.type_get("lark")
    assert moved is not None
    assert (moved.data_begin_pos, moved.begin_pos, moved.end_pos) == (1, 2, 2)
    assert not await store.pos_advance_begin(moved, NOW + 2)  # begin == end again


async def test_pos_advance_begin_waits_for_processing_tasks(store: TaskStore) -> None:
    config = await registered(store)
    await insert(store, new_task(config), NOW)
    config = await split(store, config)
    (held,) = await store.task_claim_due(config, 1, claim())
    assert not await store.pos_advance_begin(config, NOW)  # still held
    done = TaskChange(TaskStatus.FAILED, "first", "ctx", 0, NOW, "")
    assert (await store.task_update_leased_many([(held, "tok", done)], NOW))[0] is not None
    assert await store.pos_advance_begin(config, NOW)


async def test_task_table_rows_counts_inserts_and_reads_missing_tables_as_empty(
    store: TaskStore,
) -> None:
    config = await registered(store)
    assert await store.task_table_rows("lark", 1) == 0
    await store.task_insert_many([new_task(config) for _ in range(3)], NOW)
    await finish(store, config)  # rows ever inserted, whatever their status
    assert await store.task_table_rows("lark", 1) == 3
    assert await store.task_table_rows("lark", 9) == 0
    assert await store.task_table_rows("ghost", 1) == 0


async def test_tables_drop_retired_drops_old_tables_below_begin_only(store: TaskStore) -> None:
    config = await registered(store)
    old = await insert(store, new_task(config), NOW)
    config = await split(store, config)
    await insert(store, new_task(config), NOW + 100)
    config = await split(store, config)
    await insert(store, new_task(config), NOW)  # in the live end table: never dropped
    await finish(store, config)
    assert await store.pos_advance_begin(config, NOW)
    config = await store.type_get("lark")
    assert config is not None
    assert await store.pos_advance_begin(config, NOW)
    config = await store.type_get("lark")
    assert config is not None
    assert (config.begin_pos, config.end_pos) == (3, 3)

    assert await store.tables_drop_retired(config, NOW + 50) == [1]  # table 2 is too new
    assert await store.task_get("lark", 1, old.task_id) is None
    assert await store.task_table_rows("lark", 1) == 0
    config = await store.type_get("lark")
    assert config is not None
    assert (config.data_begin_pos, config.begin_pos) == (2, 3)
    assert sum((await store.task_count(config)).values()) == 2
    assert await store.tables_drop_retired(config, NOW + 50) == []
    assert await store.tables_drop_retired(config, NOW + 200) == [2]
    config = await store.type_get("lark")
    assert config is not None
    assert config.data_begin_pos == 3
    assert await store.tables_drop_retired(config, NOW + 10**6) == []  # begin table stays
    assert await store.task_table_rows("lark", 3) == 1


async def test_keys_prune_forgets_old_keys_in_bounded_batches(store: TaskStore) -> None:
    config = await registered(store)
    for i in range(3):
        await insert(store, new_task(config, key=f"old{i}"), NOW)
    await insert(store, new_task(config, key="new"), NOW + 100)
    assert await store.keys_prune("lark", NOW + 50, 2) == 2
    assert await store.keys_prune("lark", NOW + 50, 2) == 1
    assert await store.keys_prune("lark", NOW + 50, 2) == 0
    assert await store.keys_prune("other", NOW + 500, 10) == 0  # another type's keys
    config = await split(store, config)
    # A forgotten key no longer names its task; a kept one still does.
    (again,) = await store.task_insert_many([new_task(config, key="old0")], NOW + 200)
    assert isinstance(again, Task)
    assert again.task_id == "old0_lark_2"
    assert await store.task_insert_many([new_task(config, key="new")], NOW + 200) == ["new_lark_1"]


async def test_extend_lease_needs_token_version_and_processing(store: TaskStore) -> None:
    config = await registered(store)
    await insert(store, new_task(config), NOW)
    (held,) = await store.task_claim_due(config, 1, claim(deadline=NOW + 30))
    assert await store.task_extend_lease(held, "wrong", NOW + 90, NOW + 5) is None
    stale = replace(held, version=held.version - 1)
    assert await store.task_extend_lease(stale, "tok", NOW + 90, NOW + 5) is None
    extended = await store.task_extend_lease(held, "tok", NOW + 90, NOW + 5)
    assert extended is not None
    assert (extended.lease_deadline, extended.version) == (NOW + 90, held.version + 1)
    assert (extended.lease_token, extended.status) == ("tok", TaskStatus.PROCESSING)
    assert extended == await store.task_get("lark", 1, held.task_id)
    assert await store.task_list_expired(config, NOW + 60, 10) == []  # the new deadline counts
    # The old version is fenced off; after a report the lease is gone.
    assert await store.task_extend_lease(held, "tok", NOW + 99, NOW + 6) is None
    done = TaskChange(TaskStatus.SUCCESS, "first", "ctx", 0, NOW, "")
    (finished,) = await store.task_update_leased_many([(extended, "tok", done)], NOW + 7)
    assert finished is not None
    assert await store.task_extend_lease(finished, "tok", NOW + 99, NOW + 8) is None


async def test_type_set_paused_flips_the_flag_and_survives_upserts(store: TaskStore) -> None:
    config = await registered(store)
    assert not config.paused
    paused = await store.type_set_paused("lark", True, NOW + 5)
    assert paused is not None
    assert (paused.paused, paused.modify_time) == (True, NOW + 5)
    assert await store.type_get("lark") == paused
    assert [c.paused for c in await store.type_list()] == [True]
    # Re-registering changes settings, never the flag.
    again = await store.type_upsert(lark(schedule_limit=9), NOW + 6)
    assert (again.paused, again.schedule_limit) == (True, 9)
    resumed = await store.type_set_paused("lark", False, NOW + 7)
    assert resumed is not None
    assert not resumed.paused
    assert await store.type_set_paused("ghost", True, NOW) is None


def cancelled(task: Task) -> TaskChange:
    return TaskChange(TaskStatus.CANCELLED, task.task_stage, task.context, task.crt_retry_num,
                      task.order_time, '{"c":1}')  # fmt: skip


async def test_update_fenced_changes_any_status_at_its_version_only(store: TaskStore) -> None:
    config = await registered(store)
    await insert(store, new_task(config), NOW)
    (held,) = await store.task_claim_due(config, 1, claim())
    pending = await insert(store, new_task(config), NOW)
    stale = replace(pending, version=pending.version + 5)
    results = await store.task_update_fenced_many(
        [(pending, cancelled(pending)), (held, cancelled(held)), (stale, cancelled(stale))],
        NOW + 1,
    )
    assert [r is not None for r in results] == [True, True, False]
    for before, after in zip((pending, held), results, strict=False):
        assert after is not None
        assert after == await store.task_get("lark", 1, before.task_id)
        assert (after.status, after.schedule_log) == (TaskStatus.CANCELLED, '{"c":1}')
        assert (after.lease_token, after.lease_deadline) == ("", 0)
        assert (after.version, after.modify_time) == (before.version + 1, NOW + 1)
    # The holder's lease is gone with it; the cancelled task is never held again.
    assert held.lease_token
    assert await store.task_update_leased_many([(held, "tok", cancelled(held))], NOW + 2) == [None]
    assert await store.task_claim_due(config, 10, claim("later", now=NOW + 10**6)) == []


async def test_update_fenced_back_to_pending_scans_a_retired_table_again(store: TaskStore) -> None:
    config = await registered(store)
    old = await insert(store, new_task(config), NOW)
    config = await split(store, config)
    (held,) = await store.task_claim_due(config, 1, claim())
    failed = TaskChange(TaskStatus.FAILED, "first", "ctx", 0, NOW, "")
    (old,) = await store.task_update_leased_many([(held, "tok", failed)], NOW)
    assert old is not None
    assert await store.pos_advance_begin(config, NOW)  # table 1 is finished: retired
    config = await store.type_get("lark")
    assert config is not None
    assert config.begin_pos == 2
    again = TaskChange(TaskStatus.PENDING, "first", "ctx", 0, NOW - 5, "")
    (requeued,) = await store.task_update_fenced_many([(old, again)], NOW + 1)
    assert requeued is not None
    assert requeued.status is TaskStatus.PENDING
    config = await store.type_get("lark")
    assert config is not None
    assert (config.begin_pos, config.end_pos) == (1, 2)
    (taken,) = await store.task_claim_due(config, 5, claim("again", now=NOW + 1))
    assert taken.task_id == old.task_id
    assert not await store.pos_advance_begin(config, NOW + 1)  # table 1 is live again


async def test_list_filters_by_a_set_of_statuses(store: TaskStore) -> None:
    config = await registered(store)
    made = [await insert(store, new_task(config), NOW) for _ in range(3)]
    (held,) = await store.task_claim_due(config, 1, claim())
    await store.task_update_fenced_many([(made[2], cancelled(made[2]))], NOW)
    live = await store.task_list(
        config, TaskFilter(status_in=frozenset({TaskStatus.PENDING, TaskStatus.PROCESSING})),
        None, 10,
    )  # fmt: skip
    assert [t.task_id for t in live] == [made[0].task_id, made[1].task_id]
    assert held.task_id == made[0].task_id
    done = await store.task_list(config, TaskFilter(status_in=frozenset({TaskStatus.CANCELLED})),
                                 None, 10)  # fmt: skip
    assert [t.task_id for t in done] == [made[2].task_id]


def nightly(**changes: object) -> Schedule:
    schedule = Schedule(
        name="nightly",
        cron="0 3 * * *",
        time_zone="Europe/Paris",
        template=TaskTemplate("lark", "first", '{"a": 1}', 7),
        catch_up=CatchUp.ALL,
        catch_up_limit=5,
        next_fire_time=NOW + 100,
    )
    return replace(schedule, **changes)  # type: ignore[arg-type]


async def test_schedule_insert_get_and_list(store: TaskStore) -> None:
    stored = await store.schedule_insert(nightly(version=9), NOW)
    assert stored == nightly(version=1, create_time=NOW, modify_time=NOW)
    assert await store.schedule_get("nightly") == stored
    assert await store.schedule_get("nope") is None
    with pytest.raises(ScheduleAlreadyExists):
        await store.schedule_insert(nightly(cron="* * * * *"), NOW + 1)
    other = await store.schedule_insert(nightly(name="alpha", paused=True), NOW)
    assert other.paused
    assert await store.schedule_list() == [other, stored]


async def test_schedule_list_due_skips_paused_and_later_ones(store: TaskStore) -> None:
    for name, fire, paused in (("b", NOW - 5, False), ("a", NOW - 1, False), ("c", NOW, False),
                               ("d", NOW + 1, False), ("e", NOW - 9, True)):  # fmt: skip
        await store.schedule_insert(nightly(name=name, next_fire_time=fire, paused=paused), NOW)
    assert [s.name for s in await store.schedule_list_due(NOW, 10)] == ["b", "a", "c"]
    assert [s.name for s in await store.schedule_list_due(NOW, 2)] == ["b", "a"]


async def test_schedule_update_is_conditional_on_the_version(store: TaskStore) -> None:
    stored = await store.schedule_insert(nightly(), NOW)
    fired = replace(stored, last_fire_time=NOW + 100, next_fire_time=NOW + 86_500,
                    last_task_id="cron-nightly-1_lark_1", paused=True, catch_up=CatchUp.SKIP,
                    template=TaskTemplate("other", "", "", 0))  # fmt: skip
    updated = await store.schedule_update(fired, NOW + 101)
    assert updated == replace(fired, version=2, modify_time=NOW + 101)
    assert await store.schedule_get("nightly") == updated
    assert await store.schedule_update(fired, NOW + 102) is None  # version 1 is gone
    assert await store.schedule_get("nightly") == updated
    racing = await asyncio.gather(*(store.schedule_update(updated, NOW + 103) for _ in range(4)))
    assert sum(r is not None for r in racing) == 1
    assert await store.schedule_update(nightly(name="ghost"), NOW) is None


async def test_schedule_delete(store: TaskStore) -> None:
    await store.schedule_insert(nightly(), NOW)
    assert await store.schedule_delete("nightly")
    assert not await store.schedule_delete("nightly")
    assert await store.schedule_get("nightly") is None


async def test_close_makes_later_calls_unavailable(store: TaskStore) -> None:
    await store.type_list()
    await store.close()
    with pytest.raises(Unavailable):
        await store.type_list()
    await store.close()  # idempotent (the fixture closes it once more)


def test_every_store_method_has_a_contract_test() -> None:
    methods = {name for name in vars(TaskStore) if not name.startswith("_")}
    source = Path(__file__).read_text("utf-8")
    assert len(methods) >= 27
    assert sorted(name for name in methods if f"store.{name}(" not in source) == []
