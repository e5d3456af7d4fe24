"""Reads that visit task tables one at a time, written once for both backends.

Their SQL is the same on both but for the placeholder (table_sql). A backend
gives its placeholder and a way to run one read on one task table (`_reading`)
that answers None when the table does not exist: a table dropped by retention,
a position past end_pos in a forged task id, or a type never registered. That
read is the one place where a backend deals with missing tables; everything
else here is shared.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from asyncflow.core.ids import task_table
from asyncflow.core.model import PageCursor, Task, TaskFilter, TaskStatus, TaskTypeConfig
from asyncflow.store.common import TASK_COLUMNS, by_table, filter_sql, row_to_task

Rows = list[Sequence[Any]]
ReadTable = Callable[[str, Sequence[Any]], Awaitable[Rows | None]]
"""Run one read on one task table: its rows, or None when the table does not exist."""


@dataclass(frozen=True)
class TableSql:
    """The text of the per-table reads. `{table}` is filled in here (from a
    validated type and an integer position), `{ids}` with placeholders, and
    `{filters}` with fixed column names (asyncflow.store.common.filter_sql)."""

    mark: str
    """The driver's parameter placeholder."""
    task_by_id: str
    tasks_by_id: str
    list_page: str
    """Rows after an id, with filters, in id order, limited."""
    count_by_status: str
    table_rows: str
    """The table's highest id: a primary-key lookup, never a scan."""
    expired: str
    """PROCESSING rows whose lease deadline is before a time, earliest first, limited
    (the (status, lease_deadline) index)."""

    def marks(self, values: Sequence[object]) -> str:
        return ", ".join([self.mark] * len(values))


def table_sql(mark: str) -> TableSql:
    """These reads are the same SQL on every backend but for the placeholder."""
    select = f"SELECT {TASK_COLUMNS} FROM {{table}}"
    return TableSql(
        mark=mark,
        task_by_id=f"{select} WHERE task_id = {mark}",
        tasks_by_id=f"{select} WHERE task_id IN ({{ids}})",
        list_page=f"{select} WHERE id > {mark}{{filters}} ORDER BY id LIMIT {mark}",
        count_by_status="SELECT status, COUNT(*) FROM {table} GROUP BY status",
        table_rows="SELECT MAX(id) FROM {table}",
        expired=f"{select} WHERE status = 2 AND lease_deadline < {mark}"
        f" ORDER BY lease_deadline LIMIT {mark}",
    )


class TaskTableReads(ABC):
    """The TaskStore reads that go table by table; a backend inherits them."""

    _sql: TableSql

    @abstractmethod
    def _reading(self) -> AbstractAsyncContextManager[ReadTable]:
        """A scope in which to run several table reads (on one connection, where
        the backend has a pool)."""

    async def task_get(self, task_type: str, pos: int, task_id: str) -> Task | None:
        sql = self._sql.task_by_id.format(table=task_table(task_type, pos))
        async with self._reading() as read:
            rows = await read(sql, (task_id,))
        return row_to_task(rows[0], pos) if rows else None

    async def task_get_many(self, keys: list[tuple[str, int, str]]) -> dict[str, Task]:
        found: dict[str, Task] = {}
        async with self._reading() as read:
            for (task_type, pos), ids in by_table(keys).items():
                sql = self._sql.tasks_by_id.format(
                    table=task_table(task_type, pos), ids=self._sql.marks(ids)
                )
                for row in await read(sql, ids) or []:
                    found[row[1]] = row_to_task(row, pos)
        return found

    async def task_list(
        self, config: TaskTypeConfig, where: TaskFilter, after: PageCursor | None, limit: int
    ) -> list[Task]:
        filters, params = filter_sql(where, self._sql.mark)
        found: list[Task] = []
        start = max(after.pos, config.data_begin_pos) if after else config.data_begin_pos
        async with self._reading() as read:
            for pos in range(start, config.end_pos + 1):
                after_id = after.row_id if after and pos == after.pos else 0
                sql = self._sql.list_page.format(
                    table=task_table(config.task_type, pos), filters=filters
                )
                rows = await read(sql, (after_id, *params, limit - len(found)))
                found.extend(row_to_task(row, pos) for row in rows or [])
                if len(found) >= limit:
                    break
        return found

    async def task_count(self, config: TaskTypeConfig) -> dict[TaskStatus, int]:
        counts = dict.fromkeys(TaskStatus, 0)
        async with self._reading() as read:
            for pos in range(config.data_begin_pos, config.end_pos + 1):
                sql = self._sql.count_by_status.format(table=task_table(config.task_type, pos))
                for status, count in await read(sql, ()) or []:
                    counts[TaskStatus(int(status))] += int(count)
        return counts

    async def task_table_rows(self, task_type: str, pos: int) -> int:
        async with self._reading() as read:
            rows = await read(self._sql.table_rows.format(table=task_table(task_type, pos)), ())
        return int(rows[0][0] or 0) if rows else 0

    async def task_list_expired(self, config: TaskTypeConfig, now: int, limit: int) -> list[Task]:
        expired: list[Task] = []
        async with self._reading() as read:
            for pos in range(config.begin_pos, config.end_pos + 1):
                sql = self._sql.expired.format(table=task_table(config.task_type, pos))
                expired.extend(row_to_task(row, pos) for row in await read(sql, (now, limit)) or [])
        return expired
