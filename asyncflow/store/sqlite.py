"""The embedded store: SQLite in one file, for `asyncflow serve` with no database server.

One dedicated thread owns the connection and runs every operation as a whole
(a transaction where it writes more than one statement), so operations are
serialised: SQLite has one writer anyway, and the event loop never blocks on
disk. Claims use BEGIN IMMEDIATE and UPDATE ... RETURNING.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from asyncflow.core.ids import new_task_id, task_table
from asyncflow.core.model import (
    Claim,
    NewTask,
    PageCursor,
    Task,
    TaskChange,
    TaskFilter,
    TaskStatus,
    TaskTypeConfig,
)
from asyncflow.store.common import (
    CONFIG_COLUMNS,
    TASK_COLUMNS,
    by_table,
    changed,
    config_params,
    filter_sql,
    insert_target,
    inserted,
    leased_update_params,
    migrations,
    oldest_first,
    row_to_config,
    row_to_task,
    sql_text,
    statements,
)

T = TypeVar("T")

CONFIG_UPSERT = """
INSERT INTO t_schedule_cfg (task_type, schedule_limit, schedule_interval, max_processing_time,
    max_retry_num, retry_interval, max_retry_interval, create_time, modify_time)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (task_type) DO UPDATE SET
    schedule_limit = excluded.schedule_limit,
    schedule_interval = excluded.schedule_interval,
    max_processing_time = excluded.max_processing_time,
    max_retry_num = excluded.max_retry_num,
    retry_interval = excluded.retry_interval,
    max_retry_interval = excluded.max_retry_interval,
    modify_time = excluded.modify_time
"""
POS_INSERT = """
INSERT INTO t_schedule_pos (task_type, schedule_begin_pos, schedule_end_pos, create_time,
    modify_time)
VALUES (?, 1, 1, ?, ?) ON CONFLICT (task_type) DO NOTHING
"""
CONFIG_SELECT = f"""
SELECT {CONFIG_COLUMNS} FROM t_schedule_cfg c JOIN t_schedule_pos p ON p.task_type = c.task_type
"""
END_POS_ADVANCE = """
UPDATE t_schedule_pos SET schedule_end_pos = schedule_end_pos + 1, modify_time = ?
WHERE task_type = ? AND schedule_end_pos = ?
"""
# One connection, one writer: the read and the insert that follows are atomic.
INSERT_TARGET = """
SELECT p.schedule_end_pos, c.max_retry_num, c.retry_interval, c.max_retry_interval
FROM t_schedule_pos p JOIN t_schedule_cfg c ON c.task_type = p.task_type
WHERE p.task_type = ?
"""
BEGIN_POS_ADVANCE = """
UPDATE t_schedule_pos SET schedule_begin_pos = schedule_begin_pos + 1, modify_time = ?
WHERE task_type = ? AND schedule_begin_pos = ? AND schedule_begin_pos < schedule_end_pos
"""
POS_SELECT = (
    "SELECT schedule_begin_pos, schedule_end_pos, data_begin_pos FROM t_schedule_pos"
    " WHERE task_type = ?"
)
DATA_BEGIN_ADVANCE = """
UPDATE t_schedule_pos SET data_begin_pos = data_begin_pos + 1
WHERE task_type = ? AND data_begin_pos = ?
"""
LIVE_TASK = "SELECT 1 FROM {table} WHERE status IN (1, 2) LIMIT 1"
TABLE_ROWS = "SELECT MAX(id) FROM {table}"
NEWEST_CREATE = "SELECT create_time FROM {table} ORDER BY id DESC LIMIT 1"
KEYS_PRUNE = """
DELETE FROM t_task_key WHERE rowid IN (
    SELECT rowid FROM t_task_key WHERE task_type = ? AND create_time < ? LIMIT ?)
"""
KEY_INSERT = (
    "INSERT INTO t_task_key (task_type, idempotency_key, task_id, create_time) VALUES (?, ?, ?, ?)"
)
KEY_SELECT = "SELECT task_id FROM t_task_key WHERE task_type = ? AND idempotency_key = ?"
TASK_INSERT = """
INSERT INTO {table} (task_id, task_type, user_id, task_stage, status, priority, crt_retry_num,
    max_retry_num, retry_interval, max_retry_interval, schedule_log, task_context, order_time,
    version, create_time, modify_time)
VALUES (?, ?, ?, ?, 1, ?, 0, ?, ?, ?, '', ?, ?, 1, ?, ?)
"""
TASK_BY_ID = "SELECT " + TASK_COLUMNS + " FROM {table} WHERE task_id = ?"
TASKS_BY_ID = "SELECT " + TASK_COLUMNS + " FROM {table} WHERE task_id IN ({ids})"
DUE_CANDIDATES = """
SELECT order_time, id FROM {table} WHERE status = 1 AND order_time <= ?
ORDER BY order_time, id LIMIT ?
"""
CLAIM = (
    """
UPDATE {table} SET status = 2, lease_token = ?, hold_count = hold_count + 1,
    lease_deadline = ?, version = version + 1, modify_time = ?
WHERE status = 1 AND id IN ({ids})
RETURNING """
    + TASK_COLUMNS
)
UPDATE_LEASED = """
UPDATE {table} SET status = ?, task_stage = ?, task_context = ?, crt_retry_num = ?,
    order_time = ?, schedule_log = ?, lease_token = '', lease_deadline = 0,
    version = version + 1, modify_time = ?
WHERE id = ? AND status = 2 AND lease_token = ? AND version = ?
"""
EXTEND_LEASE = (
    """
UPDATE {table} SET lease_deadline = ?, version = version + 1, modify_time = ?
WHERE id = ? AND status = 2 AND lease_token = ? AND version = ?
RETURNING """
    + TASK_COLUMNS
)
# Right-hand sides see the row as it was, so crt_retry_num below is the old count.
RECOVER_STUCK = (
    """
UPDATE {table} SET
    order_time = CASE
        WHEN crt_retry_num >= max_retry_num THEN order_time
        WHEN retry_interval < 0 THEN ? - retry_interval
        ELSE ? + MIN(retry_interval << MIN(crt_retry_num, 30), max_retry_interval) END,
    status = CASE WHEN crt_retry_num >= max_retry_num THEN 4 ELSE 1 END,
    crt_retry_num = CASE WHEN crt_retry_num >= max_retry_num THEN crt_retry_num
        ELSE crt_retry_num + 1 END,
    lease_token = '', lease_deadline = 0, version = version + 1, modify_time = ?
WHERE id IN (SELECT id FROM {table} WHERE status = 2 AND lease_deadline < ?
             ORDER BY lease_deadline LIMIT ?)
RETURNING """
    + TASK_COLUMNS
)
COUNT_BY_STATUS = "SELECT status, COUNT(*) FROM {table} GROUP BY status"
LIST_PAGE = "SELECT " + TASK_COLUMNS + " FROM {table} WHERE id > ?{filters} ORDER BY id LIMIT ?"


def _first(cursor: sqlite3.Cursor) -> Any:
    """The first row or None, with the statement run to completion (an unfinished
    statement would keep COMMIT from succeeding)."""
    rows = cursor.fetchall()
    return rows[0] if rows else None


def _missing_table(exc: sqlite3.OperationalError) -> bool:
    return "no such table" in str(exc)


class SqliteStore:
    """TaskStore over one SQLite file (see module docstring)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asyncflow-sqlite")
        self._conn: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        store = cls(path)
        await store._run(store._connect)
        return store

    def _connect(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA busy_timeout = 5000")
        self._conn = conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("SqliteStore is closed")
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._db.close)
            self._conn = None
        self._executor.shutdown(wait=True)

    # -- schema ---------------------------------------------------------------

    async def migrate(self) -> list[str]:
        return await self._run(self._migrate)

    def _migrate(self) -> list[str]:
        applied = []
        with self._tx() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS asyncflow_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
            )
            done = {row[0] for row in db.execute("SELECT version FROM asyncflow_migrations")}
            for migration in migrations("sqlite"):
                if migration.version in done:
                    continue
                for statement in migration.statements:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO asyncflow_migrations (version, name) VALUES (?, ?)",
                    (migration.version, migration.name),
                )
                applied.append(f"{migration.version:04d}_{migration.name}")
        return applied

    def _create_task_table(self, db: sqlite3.Connection, task_type: str, pos: int) -> None:
        for statement in statements(sql_text("sqlite_task_table.sql")):
            db.execute(statement.format(table=task_table(task_type, pos)))

    # -- task types -----------------------------------------------------------

    async def type_upsert(self, config: TaskTypeConfig, now: int) -> TaskTypeConfig:
        return await self._run(self._type_upsert, config, now)

    def _type_upsert(self, config: TaskTypeConfig, now: int) -> TaskTypeConfig:
        with self._tx() as db:
            db.execute(CONFIG_UPSERT, config_params(config, now))
            db.execute(POS_INSERT, (config.task_type, now, now))
            stored = self._type_get(config.task_type)
            assert stored is not None
            self._create_task_table(db, stored.task_type, stored.end_pos)
        return stored

    async def type_get(self, task_type: str) -> TaskTypeConfig | None:
        return await self._run(self._type_get, task_type)

    def _type_get(self, task_type: str) -> TaskTypeConfig | None:
        row = _first(self._db.execute(CONFIG_SELECT + " WHERE c.task_type = ?", (task_type,)))
        return row_to_config(row) if row else None

    async def type_list(self) -> list[TaskTypeConfig]:
        return await self._run(self._type_list)

    def _type_list(self) -> list[TaskTypeConfig]:
        rows = self._db.execute(CONFIG_SELECT + " ORDER BY c.task_type").fetchall()
        return [row_to_config(row) for row in rows]

    async def pos_split(self, config: TaskTypeConfig, now: int) -> bool:
        return await self._run(self._pos_split, config, now)

    def _pos_split(self, config: TaskTypeConfig, now: int) -> bool:
        with self._tx() as db:
            moved = db.execute(END_POS_ADVANCE, (now, config.task_type, config.end_pos)).rowcount
            if moved:
                self._create_task_table(db, config.task_type, config.end_pos + 1)
        return moved == 1

    async def pos_advance_begin(self, config: TaskTypeConfig, now: int) -> bool:
        return await self._run(self._pos_advance_begin, config, now)

    def _pos_advance_begin(self, config: TaskTypeConfig, now: int) -> bool:
        with self._tx() as db:
            pos = _first(db.execute(POS_SELECT, (config.task_type,)))
            if pos is None or pos[0] >= pos[1]:
                return False
            begin = pos[0]
            if _first(db.execute(LIVE_TASK.format(table=task_table(config.task_type, begin)))):
                return False
            moved = db.execute(BEGIN_POS_ADVANCE, (now, config.task_type, begin)).rowcount
        return bool(moved == 1)

    async def task_table_rows(self, task_type: str, pos: int) -> int:
        return await self._run(self._task_table_rows, task_type, pos)

    def _task_table_rows(self, task_type: str, pos: int) -> int:
        try:
            row = _first(self._db.execute(TABLE_ROWS.format(table=task_table(task_type, pos))))
        except sqlite3.OperationalError as exc:
            if _missing_table(exc):
                return 0
            raise
        return int(row[0] or 0)

    async def tables_drop_retired(self, config: TaskTypeConfig, created_before: int) -> list[int]:
        return await self._run(self._tables_drop_retired, config, created_before)

    def _tables_drop_retired(self, config: TaskTypeConfig, created_before: int) -> list[int]:
        dropped: list[int] = []
        with self._tx() as db:
            pos = _first(db.execute(POS_SELECT, (config.task_type,)))
            if pos is None:
                return dropped
            begin, _, data_begin = pos
            for retired in range(data_begin, begin):
                table = task_table(config.task_type, retired)
                try:
                    newest = _first(db.execute(NEWEST_CREATE.format(table=table)))
                except sqlite3.OperationalError as exc:
                    if not _missing_table(exc):
                        raise
                    newest = None
                if newest is not None and newest[0] >= created_before:
                    break
                db.execute(f"DROP TABLE IF EXISTS {table}")
                db.execute(DATA_BEGIN_ADVANCE, (config.task_type, retired))
                dropped.append(retired)
        return dropped

    async def keys_prune(self, task_type: str, created_before: int, limit: int) -> int:
        return await self._run(self._keys_prune, task_type, created_before, limit)

    def _keys_prune(self, task_type: str, created_before: int, limit: int) -> int:
        return int(self._db.execute(KEYS_PRUNE, (task_type, created_before, limit)).rowcount)

    # -- tasks ----------------------------------------------------------------

    async def task_insert_many(self, tasks: list[NewTask], now: int) -> list[Task | str]:
        return await self._run(self._task_insert_many, tasks, now)

    def _task_insert_many(self, tasks: list[NewTask], now: int) -> list[Task | str]:
        results: list[Task | str] = []
        with self._tx() as db:
            targets = {}
            for task_type in sorted({t.task_type for t in tasks}):
                row = _first(db.execute(INSERT_TARGET, (task_type,)))
                targets[task_type] = insert_target(task_type, row)
            for task in tasks:
                target = targets[task.task_type]
                task_id = new_task_id(task.task_type, target.pos, task.idempotency_key)
                if task.idempotency_key is not None:
                    try:
                        db.execute(KEY_INSERT, (task.task_type, task.idempotency_key, task_id, now))
                    except sqlite3.IntegrityError:  # the statement alone is undone
                        existing = _first(
                            db.execute(KEY_SELECT, (task.task_type, task.idempotency_key))
                        )
                        results.append(existing[0])
                        continue
                try:
                    cursor = db.execute(
                        TASK_INSERT.format(table=task_table(task.task_type, target.pos)),
                        target.params(task, task_id, now),
                    )
                except sqlite3.IntegrityError:
                    results.append(task_id)  # the key names a task created without one
                    continue
                assert cursor.lastrowid is not None
                results.append(inserted(task, task_id, target, cursor.lastrowid, now))
        return results

    async def task_get(self, task_type: str, pos: int, task_id: str) -> Task | None:
        return await self._run(self._task_get, task_type, pos, task_id)

    def _task_get(self, task_type: str, pos: int, task_id: str) -> Task | None:
        try:
            row = _first(
                self._db.execute(TASK_BY_ID.format(table=task_table(task_type, pos)), (task_id,))
            )
        except sqlite3.OperationalError as exc:
            if _missing_table(exc):
                return None
            raise
        return row_to_task(row, pos) if row else None

    async def task_claim_due(self, config: TaskTypeConfig, limit: int, claim: Claim) -> list[Task]:
        return await self._run(self._task_claim_due, config, limit, claim)

    def _task_claim_due(self, config: TaskTypeConfig, limit: int, claim: Claim) -> list[Task]:
        claimed: list[Task] = []
        with self._tx() as db:
            candidates = [
                (order_time, pos, row_id)
                for pos in range(config.begin_pos, config.end_pos + 1)
                for order_time, row_id in db.execute(
                    DUE_CANDIDATES.format(table=task_table(config.task_type, pos)),
                    (claim.now, limit),
                )
            ]
            for pos, ids in oldest_first(candidates, limit).items():
                sql = CLAIM.format(
                    table=task_table(config.task_type, pos), ids=", ".join("?" * len(ids))
                )
                rows = db.execute(sql, (claim.token, claim.deadline, claim.now, *ids))
                claimed.extend(row_to_task(row, pos) for row in rows)
        claimed.sort(key=lambda t: (t.order_time, t.pos, t.row_id))
        return claimed

    async def task_get_many(self, keys: list[tuple[str, int, str]]) -> dict[str, Task]:
        return await self._run(self._task_get_many, keys)

    def _task_get_many(self, keys: list[tuple[str, int, str]]) -> dict[str, Task]:
        found: dict[str, Task] = {}
        for (task_type, pos), ids in by_table(keys).items():
            sql = TASKS_BY_ID.format(
                table=task_table(task_type, pos), ids=", ".join("?" * len(ids))
            )
            try:
                rows = self._db.execute(sql, ids).fetchall()
            except sqlite3.OperationalError as exc:
                if _missing_table(exc):
                    continue
                raise
            found.update((row[1], row_to_task(row, pos)) for row in rows)
        return found

    async def task_update_leased_many(
        self, updates: list[tuple[Task, str, TaskChange]], now: int
    ) -> list[Task | None]:
        return await self._run(self._task_update_leased_many, updates, now)

    def _task_update_leased_many(
        self, updates: list[tuple[Task, str, TaskChange]], now: int
    ) -> list[Task | None]:
        results: list[Task | None] = []
        with self._tx() as db:
            for task, token, change in updates:
                sql = UPDATE_LEASED.format(table=task_table(task.task_type, task.pos))
                updated = db.execute(sql, leased_update_params(task, token, change, now)).rowcount
                results.append(changed(task, change, now) if updated == 1 else None)
        return results

    async def task_extend_lease(
        self, task: Task, lease_token: str, deadline: int, now: int
    ) -> Task | None:
        return await self._run(self._task_extend_lease, task, lease_token, deadline, now)

    def _task_extend_lease(
        self, task: Task, lease_token: str, deadline: int, now: int
    ) -> Task | None:
        sql = EXTEND_LEASE.format(table=task_table(task.task_type, task.pos))
        row = _first(self._db.execute(sql, (deadline, now, task.row_id, lease_token, task.version)))
        return row_to_task(row, task.pos) if row else None

    async def task_list(
        self, config: TaskTypeConfig, where: TaskFilter, after: PageCursor | None, limit: int
    ) -> list[Task]:
        return await self._run(self._task_list, config, where, after, limit)

    def _task_list(
        self, config: TaskTypeConfig, where: TaskFilter, after: PageCursor | None, limit: int
    ) -> list[Task]:
        filters, params = filter_sql(where, "?")
        found: list[Task] = []
        start = max(after.pos, config.data_begin_pos) if after else config.data_begin_pos
        for pos in range(start, config.end_pos + 1):
            after_id = after.row_id if after and pos == after.pos else 0
            sql = LIST_PAGE.format(table=task_table(config.task_type, pos), filters=filters)
            try:
                rows = self._db.execute(sql, (after_id, *params, limit - len(found)))
            except sqlite3.OperationalError as exc:
                if _missing_table(exc):
                    continue
                raise
            found.extend(row_to_task(row, pos) for row in rows)
            if len(found) >= limit:
                break
        return found

    async def task_count(self, config: TaskTypeConfig) -> dict[TaskStatus, int]:
        return await self._run(self._task_count, config)

    def _task_count(self, config: TaskTypeConfig) -> dict[TaskStatus, int]:
        counts = dict.fromkeys(TaskStatus, 0)
        for pos in range(config.data_begin_pos, config.end_pos + 1):
            try:
                rows = self._db.execute(
                    COUNT_BY_STATUS.format(table=task_table(config.task_type, pos))
                )
            except sqlite3.OperationalError as exc:
                if _missing_table(exc):
                    continue
                raise
            for status, count in rows:
                counts[TaskStatus(status)] += count
        return counts

    async def task_recover_stuck(self, config: TaskTypeConfig, now: int, limit: int) -> list[Task]:
        return await self._run(self._task_recover_stuck, config, now, limit)

    def _task_recover_stuck(self, config: TaskTypeConfig, now: int, limit: int) -> list[Task]:
        recovered: list[Task] = []
        with self._tx() as db:
            for pos in range(config.begin_pos, config.end_pos + 1):
                sql = RECOVER_STUCK.format(table=task_table(config.task_type, pos))
                rows = db.execute(sql, (now, now, now, now, limit))
                recovered.extend(row_to_task(row, pos) for row in rows)
        return recovered
