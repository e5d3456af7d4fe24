"""The production store: MySQL 8 / MariaDB 10.6+ through an aiomysql pool.

Connections run in autocommit with READ COMMITTED, so a claim's locking read
takes no gap locks that would stall concurrent inserts. Claims lock candidate
rows with SELECT ... FOR UPDATE SKIP LOCKED and update them in the same
transaction, so concurrent holders (on any number of replicas) skip each
other's rows instead of waiting or double-claiming. DDL runs outside
transactions because MySQL commits implicitly on it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import aiomysql
import pymysql

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
from asyncflow.errors import ConfigError, Unavailable
from asyncflow.store.common import (
    CONFIG_COLUMNS,
    TASK_COLUMNS,
    by_table,
    changed,
    claimed,
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

ER_DUP_ENTRY = 1062
ER_NO_SUCH_TABLE = 1146
DATABASE_RE = re.compile(r"[A-Za-z0-9_]{1,64}")

# IF NOT EXISTS DDL raises a note when the object exists; aiomysql would turn each
# note into a Python warning plus a SHOW WARNINGS round trip.
QUIET_NOTES = "SET SESSION sql_notes = 0"
CONFIG_UPSERT = """
INSERT INTO t_schedule_cfg (task_type, schedule_limit, schedule_interval, max_processing_time,
    max_retry_num, retry_interval, max_retry_interval, create_time, modify_time)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON DUPLICATE KEY UPDATE
    schedule_limit = VALUES(schedule_limit),
    schedule_interval = VALUES(schedule_interval),
    max_processing_time = VALUES(max_processing_time),
    max_retry_num = VALUES(max_retry_num),
    retry_interval = VALUES(retry_interval),
    max_retry_interval = VALUES(max_retry_interval),
    modify_time = VALUES(modify_time)
"""
POS_INSERT = """
INSERT INTO t_schedule_pos (task_type, schedule_begin_pos, schedule_end_pos, create_time,
    modify_time)
VALUES (%s, 1, 1, %s, %s) ON DUPLICATE KEY UPDATE task_type = task_type
"""
END_POS_SELECT = "SELECT schedule_end_pos FROM t_schedule_pos WHERE task_type = %s"
CONFIG_SELECT = f"""
SELECT {CONFIG_COLUMNS} FROM t_schedule_cfg c JOIN t_schedule_pos p ON p.task_type = c.task_type
"""
END_POS_ADVANCE = """
UPDATE t_schedule_pos SET schedule_end_pos = schedule_end_pos + 1, modify_time = %s
WHERE task_type = %s AND schedule_end_pos = %s
"""
# The shared lock on the position row lasts until the insert commits; begin-advance
# takes it exclusively, so it can never retire the table a create is writing to.
INSERT_TARGET_LOCKED = """
SELECT p.schedule_end_pos, c.max_retry_num, c.retry_interval, c.max_retry_interval
FROM t_schedule_pos p JOIN t_schedule_cfg c ON c.task_type = p.task_type
WHERE p.task_type = %s LOCK IN SHARE MODE
"""
POS_LOCKED = (
    "SELECT schedule_begin_pos, schedule_end_pos, data_begin_pos FROM t_schedule_pos"
    " WHERE task_type = %s FOR UPDATE"
)
BEGIN_POS_ADVANCE = """
UPDATE t_schedule_pos SET schedule_begin_pos = schedule_begin_pos + 1, modify_time = %s
WHERE task_type = %s AND schedule_begin_pos = %s AND schedule_begin_pos < schedule_end_pos
"""
DATA_BEGIN_ADVANCE = """
UPDATE t_schedule_pos SET data_begin_pos = data_begin_pos + 1
WHERE task_type = %s AND data_begin_pos = %s
"""
# Uses idx_status_order_time: stops at the first live task instead of counting.
LIVE_TASK = "SELECT 1 FROM {table} WHERE status IN (1, 2) LIMIT 1"
TABLE_ROWS = "SELECT MAX(id) FROM {table}"
NEWEST_CREATE = "SELECT create_time FROM {table} ORDER BY id DESC LIMIT 1"
KEYS_PRUNE = "DELETE FROM t_task_key WHERE task_type = %s AND create_time < %s LIMIT %s"
KEY_INSERT = (
    "INSERT INTO t_task_key (task_type, idempotency_key, task_id, create_time)"
    " VALUES (%s, %s, %s, %s)"
)
KEY_SELECT = "SELECT task_id FROM t_task_key WHERE task_type = %s AND idempotency_key = %s"
TASK_INSERT = """
INSERT INTO {table} (task_id, task_type, user_id, task_stage, status, priority, crt_retry_num,
    max_retry_num, retry_interval, max_retry_interval, schedule_log, task_context, order_time,
    version, create_time, modify_time)
VALUES (%s, %s, %s, %s, 1, %s, 0, %s, %s, %s, '', %s, %s, 1, %s, %s)
"""
TASK_BY_ID = "SELECT " + TASK_COLUMNS + " FROM {table} WHERE task_id = %s"
TASKS_BY_ID = "SELECT " + TASK_COLUMNS + " FROM {table} WHERE task_id IN ({ids})"
DUE_LOCKED = (
    "SELECT " + TASK_COLUMNS + " FROM {table} WHERE status = 1 AND order_time <= %s"
    " ORDER BY order_time, id LIMIT %s FOR UPDATE SKIP LOCKED"
)
CLAIM = """
UPDATE {table} SET status = 2, lease_token = %s, hold_count = hold_count + 1,
    lease_deadline = %s, version = version + 1, modify_time = %s
WHERE status = 1 AND id IN ({ids})
"""
UPDATE_LEASED = """
UPDATE {table} SET status = %s, task_stage = %s, task_context = %s, crt_retry_num = %s,
    order_time = %s, schedule_log = %s, lease_token = '', lease_deadline = 0,
    version = version + 1, modify_time = %s
WHERE id = %s AND status = 2 AND lease_token = %s AND version = %s
"""
EXTEND_LEASE = """
UPDATE {table} SET lease_deadline = %s, version = version + 1, modify_time = %s
WHERE id = %s AND status = 2 AND lease_token = %s AND version = %s
"""
STUCK_LOCKED = (
    "SELECT id FROM {table} WHERE status = 2 AND lease_deadline < %s"
    " ORDER BY lease_deadline LIMIT %s FOR UPDATE SKIP LOCKED"
)
# MySQL evaluates single-table SET assignments left to right, so crt_retry_num is
# assigned last: the expressions before it still see the old count.
RECOVER_STUCK = """
UPDATE {table} SET
    order_time = CASE
        WHEN crt_retry_num >= max_retry_num THEN order_time
        WHEN retry_interval < 0 THEN %s - retry_interval
        ELSE %s + LEAST(retry_interval << LEAST(crt_retry_num, 30), max_retry_interval) END,
    status = CASE WHEN crt_retry_num >= max_retry_num THEN 4 ELSE 1 END,
    lease_token = '', lease_deadline = 0, version = version + 1, modify_time = %s,
    crt_retry_num = CASE WHEN crt_retry_num >= max_retry_num THEN crt_retry_num
        ELSE crt_retry_num + 1 END
WHERE status = 2 AND id IN ({ids})
"""
TASKS_BY_ROW_ID = "SELECT " + TASK_COLUMNS + " FROM {table} WHERE id IN ({ids})"
COUNT_BY_STATUS = "SELECT status, COUNT(*) FROM {table} GROUP BY status"
LIST_PAGE = "SELECT " + TASK_COLUMNS + " FROM {table} WHERE id > %s{filters} ORDER BY id LIMIT %s"


def _marks(values: Sequence[object]) -> str:
    return ", ".join(["%s"] * len(values))


async def _inserted(cur: aiomysql.Cursor, sql: str, params: tuple[Any, ...]) -> bool:
    """Run an INSERT; False if it hit a duplicate key."""
    try:
        await cur.execute(sql, params)
    except pymysql.err.IntegrityError as exc:
        if exc.args[0] != ER_DUP_ENTRY:
            raise
        return False
    return True


def _missing_table(exc: pymysql.err.ProgrammingError) -> bool:
    return bool(exc.args) and exc.args[0] == ER_NO_SUCH_TABLE


class MysqlStore:
    """TaskStore over an aiomysql pool (see module docstring)."""

    def __init__(self, pool: aiomysql.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(
        cls,
        *,
        host: str,
        port: int,
        user: str,
        password: str,
        database: str,
        pool_min: int = 1,
        pool_max: int = 20,
        create_database: bool = True,
    ) -> MysqlStore:
        if not DATABASE_RE.fullmatch(database):
            raise ConfigError(f"store.mysql_database: invalid database name {database!r}")
        common: dict[str, Any] = {
            "host": host,
            "port": port,
            "user": user,
            "password": password,
            "charset": "utf8mb4",
            "autocommit": True,
        }
        try:
            if create_database:
                conn = await aiomysql.connect(**common)
                try:
                    async with conn.cursor() as cur:
                        await cur.execute(QUIET_NOTES)
                        await cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
                finally:
                    conn.close()
            pool = await aiomysql.create_pool(
                minsize=pool_min,
                maxsize=pool_max,
                db=database,
                pool_recycle=3600,
                init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                **common,
            )
        except (pymysql.err.OperationalError, OSError) as exc:
            raise Unavailable(f"cannot connect to MySQL at {host}:{port}: {exc}") from exc
        return cls(pool)

    async def close(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()

    @asynccontextmanager
    async def _cursor(self) -> AsyncIterator[aiomysql.Cursor]:
        """A cursor in autocommit; connection-level failures become Unavailable."""
        try:
            async with self._pool.acquire() as conn, conn.cursor() as cur:
                yield cur
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
            raise Unavailable(f"MySQL unavailable: {exc}") from exc

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiomysql.Cursor]:
        """A cursor inside a transaction, committed on success, rolled back otherwise."""
        async with self._cursor() as cur:
            await cur.connection.begin()
            try:
                yield cur
            except BaseException:
                await cur.connection.rollback()
                raise
            await cur.connection.commit()

    # -- schema ---------------------------------------------------------------

    async def migrate(self) -> list[str]:
        applied = []
        async with self._cursor() as cur:
            # Replicas starting together must not run the same migration twice.
            await cur.execute(QUIET_NOTES)
            await cur.execute("SELECT GET_LOCK('asyncflow_migrate', 60)")
            try:
                await cur.execute(
                    "CREATE TABLE IF NOT EXISTS asyncflow_migrations ("
                    " version INT NOT NULL PRIMARY KEY, name VARCHAR(128) NOT NULL)"
                )
                await cur.execute("SELECT version FROM asyncflow_migrations")
                done = {row[0] for row in await cur.fetchall()}
                for migration in migrations("mysql"):
                    if migration.version in done:
                        continue
                    for statement in migration.statements:
                        await cur.execute(statement)
                    await cur.execute(
                        "INSERT INTO asyncflow_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                    applied.append(f"{migration.version:04d}_{migration.name}")
            finally:
                await cur.execute("SELECT RELEASE_LOCK('asyncflow_migrate')")
        return applied

    async def _create_task_table(self, cur: aiomysql.Cursor, task_type: str, pos: int) -> None:
        ddl = statements(sql_text("mysql_task_table.sql"))[0]
        await cur.execute(QUIET_NOTES)
        await cur.execute(ddl.format(table=task_table(task_type, pos)))

    # -- task types -----------------------------------------------------------

    async def type_upsert(self, config: TaskTypeConfig, now: int) -> TaskTypeConfig:
        async with self._cursor() as cur:
            await cur.execute(END_POS_SELECT, (config.task_type,))
            row = await cur.fetchone()
            # The table first: a crash after it leaves only an empty table behind.
            await self._create_task_table(cur, config.task_type, row[0] if row else 1)
        async with self._tx() as cur:
            await cur.execute(CONFIG_UPSERT, config_params(config, now))
            await cur.execute(POS_INSERT, (config.task_type, now, now))
        stored = await self.type_get(config.task_type)
        assert stored is not None
        return stored

    async def type_get(self, task_type: str) -> TaskTypeConfig | None:
        async with self._cursor() as cur:
            await cur.execute(CONFIG_SELECT + " WHERE c.task_type = %s", (task_type,))
            row = await cur.fetchone()
        return row_to_config(row) if row else None

    async def type_list(self) -> list[TaskTypeConfig]:
        async with self._cursor() as cur:
            await cur.execute(CONFIG_SELECT + " ORDER BY c.task_type")
            rows = await cur.fetchall()
        return [row_to_config(row) for row in rows]

    async def pos_split(self, config: TaskTypeConfig, now: int) -> bool:
        async with self._cursor() as cur:
            # Table first (DDL cannot join a transaction): readers only look at
            # tables up to end_pos, so an extra empty table is harmless.
            await self._create_task_table(cur, config.task_type, config.end_pos + 1)
            moved = await cur.execute(END_POS_ADVANCE, (now, config.task_type, config.end_pos))
        return bool(moved == 1)

    async def pos_advance_begin(self, config: TaskTypeConfig, now: int) -> bool:
        async with self._tx() as cur:
            await cur.execute(POS_LOCKED, (config.task_type,))
            pos = await cur.fetchone()
            if pos is None or pos[0] >= pos[1]:
                return False
            begin = pos[0]
            await cur.execute(LIVE_TASK.format(table=task_table(config.task_type, begin)))
            if await cur.fetchone():
                return False
            moved = await cur.execute(BEGIN_POS_ADVANCE, (now, config.task_type, begin))
        return bool(moved == 1)

    async def task_table_rows(self, task_type: str, pos: int) -> int:
        async with self._cursor() as cur:
            try:
                await cur.execute(TABLE_ROWS.format(table=task_table(task_type, pos)))
            except pymysql.err.ProgrammingError as exc:
                if _missing_table(exc):
                    return 0
                raise
            row = await cur.fetchone()
        return int(row[0] or 0)

    async def tables_drop_retired(self, config: TaskTypeConfig, created_before: int) -> list[int]:
        dropped: list[int] = []
        async with self._cursor() as cur:
            await cur.execute(POS_LOCKED.removesuffix(" FOR UPDATE"), (config.task_type,))
            pos = await cur.fetchone()
            if pos is None:
                return dropped
            begin, _, data_begin = pos
            await cur.execute(QUIET_NOTES)
            for retired in range(data_begin, begin):
                table = task_table(config.task_type, retired)
                try:
                    await cur.execute(NEWEST_CREATE.format(table=table))
                    newest = await cur.fetchone()
                except pymysql.err.ProgrammingError as exc:
                    if not _missing_table(exc):
                        raise
                    newest = None
                if newest is not None and newest[0] >= created_before:
                    break
                # DDL commits on its own; the conditional update makes a rerun
                # after a crash between the two statements harmless.
                await cur.execute(f"DROP TABLE IF EXISTS {table}")
                await cur.execute(DATA_BEGIN_ADVANCE, (config.task_type, retired))
                dropped.append(retired)
        return dropped

    async def keys_prune(self, task_type: str, created_before: int, limit: int) -> int:
        async with self._cursor() as cur:
            return int(await cur.execute(KEYS_PRUNE, (task_type, created_before, limit)))

    # -- tasks ----------------------------------------------------------------

    async def task_insert_many(self, tasks: list[NewTask], now: int) -> list[Task | str]:
        results: list[Task | str] = []
        async with self._tx() as cur:
            targets = {}
            for task_type in sorted({t.task_type for t in tasks}):  # one lock order
                await cur.execute(INSERT_TARGET_LOCKED, (task_type,))
                targets[task_type] = insert_target(task_type, await cur.fetchone())
            for task in tasks:
                target = targets[task.task_type]
                task_id = new_task_id(task.task_type, target.pos, task.idempotency_key)
                # A duplicate key undoes the failed statement only, not the transaction.
                if task.idempotency_key is not None:
                    key = (task.task_type, task.idempotency_key)
                    if not await _inserted(cur, KEY_INSERT, (*key, task_id, now)):
                        await cur.execute(KEY_SELECT, key)
                        results.append((await cur.fetchone())[0])
                        continue
                insert = TASK_INSERT.format(table=task_table(task.task_type, target.pos))
                if not await _inserted(cur, insert, target.params(task, task_id, now)):
                    results.append(task_id)  # the key names a task created without one
                    continue
                results.append(inserted(task, task_id, target, cur.lastrowid, now))
        return results

    async def task_get(self, task_type: str, pos: int, task_id: str) -> Task | None:
        async with self._cursor() as cur:
            try:
                await cur.execute(TASK_BY_ID.format(table=task_table(task_type, pos)), (task_id,))
            except pymysql.err.ProgrammingError as exc:
                if _missing_table(exc):
                    return None
                raise
            row = await cur.fetchone()
        return row_to_task(row, pos) if row else None

    async def task_claim_due(self, config: TaskTypeConfig, limit: int, claim: Claim) -> list[Task]:
        async with self._tx() as cur:
            locked: dict[tuple[int, int], Task] = {}
            for pos in range(config.begin_pos, config.end_pos + 1):
                table = task_table(config.task_type, pos)
                await cur.execute(DUE_LOCKED.format(table=table), (claim.now, limit))
                for row in await cur.fetchall():
                    task = row_to_task(row, pos)
                    locked[(pos, task.row_id)] = task
            chosen = oldest_first(((t.order_time, t.pos, t.row_id) for t in locked.values()), limit)
            result: list[Task] = []
            for pos, ids in chosen.items():
                sql = CLAIM.format(table=task_table(config.task_type, pos), ids=_marks(ids))
                updated = await cur.execute(sql, (claim.token, claim.deadline, claim.now, *ids))
                if updated != len(ids):  # the rows are locked by us: cannot happen
                    raise RuntimeError(f"claimed {updated} of {len(ids)} locked rows")
                result.extend(claimed(locked[(pos, row_id)], claim) for row_id in ids)
        result.sort(key=lambda t: (t.order_time, t.pos, t.row_id))
        return result

    async def task_get_many(self, keys: list[tuple[str, int, str]]) -> dict[str, Task]:
        found: dict[str, Task] = {}
        async with self._cursor() as cur:
            for (task_type, pos), ids in by_table(keys).items():
                sql = TASKS_BY_ID.format(table=task_table(task_type, pos), ids=_marks(ids))
                try:
                    await cur.execute(sql, ids)
                except pymysql.err.ProgrammingError as exc:
                    if _missing_table(exc):
                        continue
                    raise
                found.update((row[1], row_to_task(row, pos)) for row in await cur.fetchall())
        return found

    async def task_update_leased_many(
        self, updates: list[tuple[Task, str, TaskChange]], now: int
    ) -> list[Task | None]:
        results: list[Task | None] = []
        # A batch in one transaction: one log flush for all. A single update is
        # atomic on its own, and autocommit spares the BEGIN/COMMIT round trips.
        scope = self._tx() if len(updates) > 1 else self._cursor()
        async with scope as cur:
            for task, token, change in updates:
                sql = UPDATE_LEASED.format(table=task_table(task.task_type, task.pos))
                updated = await cur.execute(sql, leased_update_params(task, token, change, now))
                results.append(changed(task, change, now) if updated == 1 else None)
        return results

    async def task_extend_lease(
        self, task: Task, lease_token: str, deadline: int, now: int
    ) -> Task | None:
        async with self._cursor() as cur:
            updated = await cur.execute(
                EXTEND_LEASE.format(table=task_table(task.task_type, task.pos)),
                (deadline, now, task.row_id, lease_token, task.version),
            )
        if updated != 1:
            return None
        return replace(task, lease_deadline=deadline, version=task.version + 1, modify_time=now)

    async def task_list(
        self, config: TaskTypeConfig, where: TaskFilter, after: PageCursor | None, limit: int
    ) -> list[Task]:
        filters, params = filter_sql(where, "%s")
        found: list[Task] = []
        start = max(after.pos, config.data_begin_pos) if after else config.data_begin_pos
        async with self._cursor() as cur:
            for pos in range(start, config.end_pos + 1):
                after_id = after.row_id if after and pos == after.pos else 0
                sql = LIST_PAGE.format(table=task_table(config.task_type, pos), filters=filters)
                try:
                    await cur.execute(sql, (after_id, *params, limit - len(found)))
                except pymysql.err.ProgrammingError as exc:
                    if _missing_table(exc):
                        continue
                    raise
                found.extend(row_to_task(row, pos) for row in await cur.fetchall())
                if len(found) >= limit:
                    break
        return found

    async def task_count(self, config: TaskTypeConfig) -> dict[TaskStatus, int]:
        counts = dict.fromkeys(TaskStatus, 0)
        async with self._cursor() as cur:
            for pos in range(config.data_begin_pos, config.end_pos + 1):
                try:
                    await cur.execute(
                        COUNT_BY_STATUS.format(table=task_table(config.task_type, pos))
                    )
                except pymysql.err.ProgrammingError as exc:
                    if _missing_table(exc):
                        continue
                    raise
                for status, count in await cur.fetchall():
                    counts[TaskStatus(status)] += int(count)
        return counts

    async def task_recover_stuck(self, config: TaskTypeConfig, now: int, limit: int) -> list[Task]:
        recovered: list[Task] = []
        async with self._tx() as cur:
            for pos in range(config.begin_pos, config.end_pos + 1):
                table = task_table(config.task_type, pos)
                await cur.execute(STUCK_LOCKED.format(table=table), (now, limit))
                ids = [row[0] for row in await cur.fetchall()]
                if not ids:
                    continue
                await cur.execute(
                    RECOVER_STUCK.format(table=table, ids=_marks(ids)), (now, now, now, *ids)
                )
                await cur.execute(TASKS_BY_ROW_ID.format(table=table, ids=_marks(ids)), ids)
                recovered.extend(row_to_task(row, pos) for row in await cur.fetchall())
        return recovered
