"""In-memory fakes of the core's ports, for the unit tier.

FakeStore keeps the TaskStore contract in dictionaries: the store contract
suite (tests/store/test_contract.py) runs against it as well as against SQLite
and MariaDB, so what a unit test learns from it holds for the real stores. Its
methods never await, so each one is atomic on the event loop, as a transaction
would be.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from asyncflow.core.ids import new_task_id
from asyncflow.core.model import (
    Claim,
    PageCursor,
    PoolUsage,
    Schedule,
    Task,
    TaskChange,
    TaskFilter,
    TaskInsert,
    TaskStatus,
    TaskTypeConfig,
)
from asyncflow.errors import ScheduleAlreadyExists, TaskTypeNotFound, Unavailable
from asyncflow.store.common import oldest_first, wire_size


@dataclass
class Table:
    rows: dict[int, Task] = field(default_factory=dict)
    """By row id, in insertion order."""
    last_id: int = 0


class FakeStore:
    def __init__(self) -> None:
        self.types: dict[str, TaskTypeConfig] = {}
        self.tables: dict[tuple[str, int], Table] = {}
        self.keys: dict[tuple[str, str], tuple[str, int]] = {}
        """(task_type, idempotency_key) -> (task_id, create_time)."""
        self.schedules: dict[str, Schedule] = {}
        self.closed = False
        self.migrated = False
        self.calls: list[str] = []
        """Names of the methods called, in order."""

    def _enter(self, method: str) -> None:
        if self.closed:
            raise Unavailable("the fake store is closed")
        self.calls.append(method)

    def _rows(self, task_type: str, pos: int) -> dict[int, Task]:
        table = self.tables.get((task_type, pos))
        return table.rows if table is not None else {}

    def _current(self, task: Task) -> Task | None:
        return self._rows(task.task_type, task.pos).get(task.row_id)

    def _write(self, task: Task) -> Task:
        self.tables[(task.task_type, task.pos)].rows[task.row_id] = task
        return task

    # -- schema and types -----------------------------------------------------

    async def migrate(self) -> list[str]:
        self._enter("migrate")
        self.migrated = True
        return []

    async def close(self) -> None:
        self.closed = True

    async def schema_ready(self) -> bool:
        self._enter("schema_ready")
        return self.migrated

    def pool_usage(self) -> PoolUsage:
        return PoolUsage(in_use=0, open=0, limit=0)

    async def type_upsert(self, config: TaskTypeConfig, now: int) -> TaskTypeConfig:
        self._enter("type_upsert")
        current = self.types.get(config.task_type)
        if current is None:
            stored = replace(config, begin_pos=1, end_pos=1, data_begin_pos=1, create_time=now,
                             modify_time=now, paused=False)  # fmt: skip
        else:
            stored = replace(config, begin_pos=current.begin_pos, end_pos=current.end_pos,
                             data_begin_pos=current.data_begin_pos, paused=current.paused,
                             create_time=current.create_time, modify_time=now)  # fmt: skip
        self.types[config.task_type] = stored
        self.tables.setdefault((config.task_type, stored.end_pos), Table())
        return stored

    async def type_get(self, task_type: str) -> TaskTypeConfig | None:
        self._enter("type_get")
        return self.types.get(task_type)

    async def type_list(self) -> list[TaskTypeConfig]:
        self._enter("type_list")
        return [self.types[name] for name in sorted(self.types)]

    async def type_set_paused(
        self, task_type: str, paused: bool, now: int
    ) -> TaskTypeConfig | None:
        self._enter("type_set_paused")
        current = self.types.get(task_type)
        if current is None:
            return None
        self.types[task_type] = replace(current, paused=paused, modify_time=now)
        return self.types[task_type]

    async def pos_split(self, config: TaskTypeConfig, now: int) -> bool:
        self._enter("pos_split")
        current = self.types.get(config.task_type)
        if current is None or current.end_pos != config.end_pos:
            return False
        self.types[config.task_type] = replace(current, end_pos=current.end_pos + 1)
        self.tables.setdefault((config.task_type, current.end_pos + 1), Table())
        return True

    async def pos_advance_begin(self, config: TaskTypeConfig, now: int) -> bool:
        self._enter("pos_advance_begin")
        current = self.types.get(config.task_type)
        if current is None or current.begin_pos >= current.end_pos:
            return False
        rows = self._rows(config.task_type, current.begin_pos).values()
        if any(not task.status.terminal for task in rows):
            return False
        self.types[config.task_type] = replace(current, begin_pos=current.begin_pos + 1)
        return True

    async def task_table_rows(self, task_type: str, pos: int) -> int:
        self._enter("task_table_rows")
        return max(self._rows(task_type, pos), default=0)

    async def tables_drop_retired(self, config: TaskTypeConfig, created_before: int) -> list[int]:
        self._enter("tables_drop_retired")
        current = self.types.get(config.task_type)
        dropped: list[int] = []
        if current is None:
            return dropped
        for retired in range(current.data_begin_pos, current.begin_pos):
            rows = self._rows(config.task_type, retired)
            if rows and rows[max(rows)].create_time >= created_before:
                break
            self.tables.pop((config.task_type, retired), None)
            current = replace(current, data_begin_pos=retired + 1)
            dropped.append(retired)
        self.types[config.task_type] = current
        return dropped

    async def keys_prune(self, task_type: str, created_before: int, limit: int) -> int:
        self._enter("keys_prune")
        old = [key for key, (_, created) in self.keys.items()
               if key[0] == task_type and created < created_before][:limit]  # fmt: skip
        for key in old:
            del self.keys[key]
        return len(old)

    # -- tasks ----------------------------------------------------------------

    async def task_insert_many(self, tasks: list[TaskInsert], now: int) -> list[Task | str]:
        self._enter("task_insert_many")
        for task in tasks:
            if task.task_type not in self.types:
                raise TaskTypeNotFound(f"task type {task.task_type!r} is not registered",
                                       field="task_type")  # fmt: skip
        results: list[Task | str] = []
        for task in tasks:
            config = self.types[task.task_type]
            task_id = new_task_id(task.task_type, config.end_pos, task.idempotency_key)
            if task.idempotency_key is not None:
                key = (task.task_type, task.idempotency_key)
                if key in self.keys:
                    results.append(self.keys[key][0])
                    continue
                self.keys[key] = (task_id, now)
            table = self.tables[(task.task_type, config.end_pos)]
            if any(row.task_id == task_id for row in table.rows.values()):
                results.append(task_id)  # the key names a task created without one
                continue
            table.last_id += 1
            leased = bool(task.lease_token) and not config.paused and task.order_time <= now
            results.append(self._write(Task(
                row_id=table.last_id, task_id=task_id, task_type=task.task_type,
                pos=config.end_pos, user_id=task.user_id, task_stage=task.task_stage,
                status=TaskStatus.PROCESSING if leased else TaskStatus.PENDING,
                priority=task.priority, crt_retry_num=0,
                max_retry_num=config.max_retry_num, retry=config.retry, context=task.context,
                schedule_log="", order_time=task.order_time,
                lease_token=task.lease_token if leased else "", hold_count=int(leased),
                lease_deadline=now + config.max_processing_time if leased else 0,
                version=1, create_time=now, modify_time=now,
            )))  # fmt: skip
        return results

    async def task_get(self, task_type: str, pos: int, task_id: str) -> Task | None:
        self._enter("task_get")
        return next((t for t in self._rows(task_type, pos).values() if t.task_id == task_id), None)

    async def task_get_many(self, keys: list[tuple[str, int, str]]) -> dict[str, Task]:
        self._enter("task_get_many")
        found = {}
        for task_type, pos, task_id in keys:
            for task in self._rows(task_type, pos).values():
                if task.task_id == task_id:
                    found[task_id] = task
        return found

    async def task_claim_due(self, config: TaskTypeConfig, limit: int, claim: Claim) -> list[Task]:
        (held,) = await self.task_claim_due_many(config, [(limit, claim)])
        return held

    async def task_claim_due_many(
        self, config: TaskTypeConfig, claims: list[tuple[int, Claim]]
    ) -> list[list[Task]]:
        self._enter("task_claim_due")
        now = claims[0][1].now
        rows = {
            (task.pos, task.row_id): task
            for pos in range(config.begin_pos, config.end_pos + 1)
            for task in self._rows(config.task_type, pos).values()
            if task.status is TaskStatus.PENDING and task.order_time <= now
        }
        shares = oldest_first(
            ((t.order_time, t.pos, t.row_id, wire_size(t)) for t in rows.values()),
            [(limit, claim.max_bytes) for limit, claim in claims],
        )
        results = []
        for (_, claim), chosen in zip(claims, shares, strict=True):
            due = sorted((rows[(pos, row_id)] for pos, ids in chosen.items() for row_id in ids),
                         key=lambda t: (t.order_time, t.pos, t.row_id))  # fmt: skip
            results.append([
                self._write(replace(
                    task, status=TaskStatus.PROCESSING, lease_token=claim.token,
                    hold_count=task.hold_count + 1, lease_deadline=claim.deadline,
                    version=task.version + 1, modify_time=claim.now,
                ))
                for task in due
            ])  # fmt: skip
        return results

    async def task_update_fenced_many(
        self, updates: list[tuple[Task, TaskChange]], now: int
    ) -> list[Task | None]:
        self._enter("task_update_fenced_many")
        results: list[Task | None] = []
        for task, change in updates:
            current = self._current(task)
            if current is None or current.version != task.version:
                results.append(None)
                continue
            results.append(self._write(replace(
                task, status=change.status, task_stage=change.task_stage,
                context=change.context, crt_retry_num=change.crt_retry_num,
                order_time=change.order_time, schedule_log=change.schedule_log,
                lease_token="", lease_deadline=0, version=task.version + 1, modify_time=now,
            )))  # fmt: skip
            config = self.types[task.task_type]
            if change.status is TaskStatus.PENDING and task.pos < config.begin_pos:
                self.types[task.task_type] = replace(config, begin_pos=task.pos)
        return results

    def _holds(self, task: Task, lease_token: str) -> bool:
        current = self._current(task)
        return (
            current is not None
            and current.status is TaskStatus.PROCESSING
            and current.lease_token == lease_token
            and current.version == task.version
        )

    async def task_update_leased_many(
        self, updates: list[tuple[Task, str, TaskChange]], now: int
    ) -> list[Task | None]:
        self._enter("task_update_leased_many")
        results: list[Task | None] = []
        for task, lease_token, change in updates:
            if not self._holds(task, lease_token):
                results.append(None)
                continue
            results.append(self._write(replace(
                task, status=change.status, task_stage=change.task_stage,
                context=change.context, crt_retry_num=change.crt_retry_num,
                order_time=change.order_time, schedule_log=change.schedule_log,
                lease_token="", lease_deadline=0, version=task.version + 1, modify_time=now,
            )))  # fmt: skip
        return results

    async def task_extend_lease(
        self, task: Task, lease_token: str, deadline: int, now: int
    ) -> Task | None:
        self._enter("task_extend_lease")
        if not self._holds(task, lease_token):
            return None
        return self._write(replace(task, lease_deadline=deadline, version=task.version + 1,
                                   modify_time=now))  # fmt: skip

    async def task_list(
        self, config: TaskTypeConfig, where: TaskFilter, after: PageCursor | None, limit: int
    ) -> list[Task]:
        self._enter("task_list")
        found: list[Task] = []
        start = max(after.pos, config.data_begin_pos) if after else config.data_begin_pos
        for pos in range(start, config.end_pos + 1):
            after_id = after.row_id if after and pos == after.pos else 0
            found += [
                task for task in self._rows(config.task_type, pos).values()
                if task.row_id > after_id
                and where.status in (None, task.status)
                and where.task_stage in (None, task.task_stage)
                and where.user_id in (None, task.user_id)
                and (not where.status_in or task.status in where.status_in)
            ]  # fmt: skip
        return found[:limit]

    async def task_count(self, config: TaskTypeConfig) -> dict[TaskStatus, int]:
        self._enter("task_count")
        counts = dict.fromkeys(TaskStatus, 0)
        for pos in range(config.data_begin_pos, config.end_pos + 1):
            for task in self._rows(config.task_type, pos).values():
                counts[task.status] += 1
        return counts

    async def task_list_expired(self, config: TaskTypeConfig, now: int, limit: int) -> list[Task]:
        self._enter("task_list_expired")
        expired: list[Task] = []
        for pos in range(config.begin_pos, config.end_pos + 1):
            expired += sorted(
                (task for task in self._rows(config.task_type, pos).values()
                 if task.status is TaskStatus.PROCESSING and task.lease_deadline < now),
                key=lambda t: t.lease_deadline,
            )[:limit]  # fmt: skip
        return expired

    # -- schedules ------------------------------------------------------------

    async def schedule_insert(self, schedule: Schedule, now: int) -> Schedule:
        self._enter("schedule_insert")
        if schedule.name in self.schedules:
            raise ScheduleAlreadyExists(f"schedule {schedule.name!r} already exists",
                                        field="name")  # fmt: skip
        stored = replace(schedule, version=1, create_time=now, modify_time=now)
        self.schedules[schedule.name] = stored
        return stored

    async def schedule_get(self, name: str) -> Schedule | None:
        self._enter("schedule_get")
        return self.schedules.get(name)

    async def schedule_list(self) -> list[Schedule]:
        self._enter("schedule_list")
        return [self.schedules[name] for name in sorted(self.schedules)]

    async def schedule_list_due(self, now: int, limit: int) -> list[Schedule]:
        self._enter("schedule_list_due")
        due = [s for s in self.schedules.values() if not s.paused and s.next_fire_time <= now]
        return sorted(due, key=lambda s: (s.next_fire_time, s.name))[:limit]

    async def schedule_update(self, schedule: Schedule, now: int) -> Schedule | None:
        self._enter("schedule_update")
        current = self.schedules.get(schedule.name)
        if current is None or current.version != schedule.version:
            return None
        stored = replace(schedule, version=schedule.version + 1,
                         create_time=current.create_time, modify_time=now)  # fmt: skip
        self.schedules[schedule.name] = stored
        return stored

    async def schedule_delete(self, name: str) -> bool:
        self._enter("schedule_delete")
        return self.schedules.pop(name, None) is not None


class RecordingCache:
    """The TaskCache rule (a newer version wins) in a dict, with every put recorded."""

    def __init__(self) -> None:
        self.entries: dict[str, Task] = {}
        self.puts: list[list[Task]] = []

    def generation(self) -> int:
        return 0

    async def get(self, task_id: str) -> Task | None:
        return self.entries.get(task_id)

    async def put(self, tasks: list[Task], generation: int) -> None:
        self.puts.append(list(tasks))
        for task in tasks:
            current = self.entries.get(task.task_id)
            if current is None or current.version < task.version:
                self.entries[task.task_id] = task

    async def fill(self, tasks: list[Task], generation: int) -> None:
        await self.put(tasks, generation)

    async def close(self) -> None:
        self.entries.clear()


class RecordingListener:
    """The DueListener port: remembers every (task_type, when, count) it was told."""

    def __init__(self) -> None:
        self.due: list[tuple[str, int, int]] = []

    def tasks_due(self, task_type: str, when: int, count: int) -> None:
        self.due.append((task_type, when, count))
