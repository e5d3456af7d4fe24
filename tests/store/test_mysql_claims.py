"""MariaDB's uncontended claim (a plain read, then one UPDATE fenced by each row's
version) when another replica claims some of the same rows between its read and
its update: a deterministic run of the race the concurrent contract test only
meets by chance."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import MYSQL, open_store
from test_contract import NOW, claim, insert, lark, new_task

from asyncflow.core.ids import task_table
from asyncflow.core.model import Task, TaskStatus
from asyncflow.store.mysql import MysqlStore
from asyncflow.store.mysql_sql import DUE_ROWS

pytestmark = pytest.mark.mysql


@pytest.fixture
async def replicas(
    tmp_path: Path, mysql_database: str
) -> AsyncIterator[tuple[MysqlStore, MysqlStore]]:
    """Two stores on one (emptied) database: two replicas' views."""
    first = await open_store("mysql", tmp_path, mysql_database)
    assert isinstance(first, MysqlStore)
    await first.migrate()
    second = await MysqlStore.open(**MYSQL, database=mysql_database)
    yield first, second
    await first.close()
    await second.close()


def race_after_read(store: MysqlStore, sql: str, race: Callable[[], Awaitable[None]]) -> None:
    """Make `store` run `race` once, right after it executed `sql` (its rows are
    already read and buffered by then). The store's cursor is wrapped on this
    instance only: the one way to put another replica's claim between the
    claim's read and its update every time."""
    opened = store._cursor
    raced = False

    @asynccontextmanager
    async def cursor() -> AsyncIterator[Any]:
        async with opened() as cur:
            execute = cur.execute

            async def execute_then_race(statement: str, args: Any = None) -> int:
                nonlocal raced
                result = await execute(statement, args)
                if statement == sql and not raced:
                    raced = True
                    await race()
                return int(result)

            cur.execute = execute_then_race
            yield cur

    store._cursor = cursor  # type: ignore[method-assign]


async def test_a_claim_that_loses_rows_to_another_replica_takes_only_its_own(
    replicas: tuple[MysqlStore, MysqlStore],
) -> None:
    mine, other = replicas
    config = await mine.type_upsert(lark(), NOW)
    made = [await insert(mine, new_task(config, order_time=NOW - 10 + i)) for i in range(10)]
    taken: list[Task] = []

    async def other_claims() -> None:  # the 3 oldest, which this claim has just read
        taken.extend(await other.task_claim_due(config, 3, claim("other")))

    race_after_read(mine, DUE_ROWS.format(table=task_table("lark", 1)), other_claims)
    held = await mine.task_claim_due(config, 5, claim("mine"))

    assert [t.task_id for t in taken] == [t.task_id for t in made[:3]]
    # The fence kept the other's rows; the claim topped up with the next oldest.
    assert [t.task_id for t in held] == [t.task_id for t in made[3:8]]
    for task, token in [*((t, "other") for t in taken), *((t, "mine") for t in held)]:
        stored = await mine.task_get("lark", 1, task.task_id)
        assert stored == task  # each replica's answer is the row as written
        assert (stored.status, stored.lease_token, stored.hold_count) == (
            TaskStatus.PROCESSING, token, 1,
        )  # fmt: skip
    # The rest is still there for whoever claims next (now on the locking path).
    rest = await mine.task_claim_due(config, 10, claim("later"))
    assert [t.task_id for t in rest] == [t.task_id for t in made[8:]]
