"""What operator control stores, written once for both backends: the cron
schedules (t_cron_schedule) and the paused flag of task types.

Their SQL is the same on both but for the placeholder. A backend gives two
primitives: run one statement (its row count and rows), and run one INSERT that
answers False on a duplicate key; everything else here is shared. Every write to
a schedule but its insert is conditional on the row's version.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from asyncflow.core.model import CatchUp, Schedule, TaskTemplate, TaskTypeConfig
from asyncflow.errors import ScheduleAlreadyExists
from asyncflow.store.tables import Rows

COLUMNS = (
    "name, cron_expr, time_zone, task_type, task_stage, task_context, priority, catch_up,"
    " catch_up_limit, paused, next_fire_time, last_fire_time, last_task_id, version,"
    " create_time, modify_time"
)


@dataclass(frozen=True)
class ScheduleSql:
    insert: str
    by_name: str
    ordered: str
    due: str
    update: str
    delete: str
    type_paused: str
    """Sets a task type's paused flag (t_schedule_cfg)."""


def schedule_sql(mark: str) -> ScheduleSql:
    """These statements are the same SQL on every backend but for the placeholder."""
    marks = ", ".join([mark] * 16)
    select = f"SELECT {COLUMNS} FROM t_cron_schedule"
    return ScheduleSql(
        insert=f"INSERT INTO t_cron_schedule ({COLUMNS}) VALUES ({marks})",
        by_name=f"{select} WHERE name = {mark}",
        ordered=f"{select} ORDER BY name",
        due=f"{select} WHERE paused = 0 AND next_fire_time <= {mark}"
        f" ORDER BY next_fire_time, name LIMIT {mark}",
        update=f"""
UPDATE t_cron_schedule SET cron_expr = {mark}, time_zone = {mark}, task_type = {mark},
    task_stage = {mark}, task_context = {mark}, priority = {mark}, catch_up = {mark},
    catch_up_limit = {mark}, paused = {mark}, next_fire_time = {mark}, last_fire_time = {mark},
    last_task_id = {mark}, version = version + 1, modify_time = {mark}
WHERE name = {mark} AND version = {mark}""",
        delete=f"DELETE FROM t_cron_schedule WHERE name = {mark}",
        type_paused=f"UPDATE t_schedule_cfg SET paused = {mark}, modify_time = {mark}"
        f" WHERE task_type = {mark}",
    )


def row_to_schedule(row: Sequence[Any]) -> Schedule:
    return Schedule(
        name=row[0],
        cron=row[1],
        time_zone=row[2],
        template=TaskTemplate(
            task_type=row[3], task_stage=row[4], context=row[5], priority=int(row[6])
        ),
        catch_up=CatchUp(int(row[7])),
        catch_up_limit=int(row[8]),
        paused=bool(row[9]),
        next_fire_time=int(row[10]),
        last_fire_time=int(row[11]),
        last_task_id=row[12],
        version=int(row[13]),
        create_time=int(row[14]),
        modify_time=int(row[15]),
    )


def _settings(schedule: Schedule) -> tuple[Any, ...]:
    """The columns an update writes, in ScheduleSql.update order (before modify_time)."""
    template = schedule.template
    return (
        schedule.cron,
        schedule.time_zone,
        template.task_type,
        template.task_stage,
        template.context,
        template.priority,
        int(schedule.catch_up),
        schedule.catch_up_limit,
        int(schedule.paused),
        schedule.next_fire_time,
        schedule.last_fire_time,
        schedule.last_task_id,
    )


class OperatorRows(ABC):
    """The TaskStore methods of schedules and of the paused flag of types."""

    _schedule_sql: ScheduleSql

    @abstractmethod
    async def type_get(self, task_type: str) -> TaskTypeConfig | None: ...

    @abstractmethod
    async def _statement(self, sql: str, params: Sequence[Any]) -> tuple[int, Rows]:
        """Run one statement: the rows it changed and the rows it returned."""

    @abstractmethod
    async def _insert(self, sql: str, params: Sequence[Any]) -> bool:
        """Run one INSERT; False if it hit a unique key."""

    async def type_set_paused(
        self, task_type: str, paused: bool, now: int
    ) -> TaskTypeConfig | None:
        await self._statement(self._schedule_sql.type_paused, (int(paused), now, task_type))
        return await self.type_get(task_type)

    async def schedule_insert(self, schedule: Schedule, now: int) -> Schedule:
        stored = replace(schedule, version=1, create_time=now, modify_time=now)
        params = (stored.name, *_settings(stored), 1, now, now)
        if not await self._insert(self._schedule_sql.insert, params):
            raise ScheduleAlreadyExists(f"schedule {schedule.name!r} already exists", field="name")
        return stored

    async def schedule_get(self, name: str) -> Schedule | None:
        _, rows = await self._statement(self._schedule_sql.by_name, (name,))
        return row_to_schedule(rows[0]) if rows else None

    async def schedule_list(self) -> list[Schedule]:
        _, rows = await self._statement(self._schedule_sql.ordered, ())
        return [row_to_schedule(row) for row in rows]

    async def schedule_list_due(self, now: int, limit: int) -> list[Schedule]:
        _, rows = await self._statement(self._schedule_sql.due, (now, limit))
        return [row_to_schedule(row) for row in rows]

    async def schedule_update(self, schedule: Schedule, now: int) -> Schedule | None:
        params = (*_settings(schedule), now, schedule.name, schedule.version)
        changed, _ = await self._statement(self._schedule_sql.update, params)
        if changed != 1:
            return None
        return replace(schedule, version=schedule.version + 1, modify_time=now)

    async def schedule_delete(self, name: str) -> bool:
        changed, _ = await self._statement(self._schedule_sql.delete, (name,))
        return changed == 1
