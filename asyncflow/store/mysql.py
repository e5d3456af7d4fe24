"""The production store: MySQL 8 / MariaDB 10.6+ through an aiomysql pool.

Connections run in autocommit with READ COMMITTED, so a claim's locking read
takes no gap locks that would stall concurrent inserts. Claims lock candidate
rows (found by a plain index read, locked by primary key; see DUE_IDS) with
SELECT ... FOR UPDATE SKIP LOCKED and update them in the same
transaction, so concurrent holders (on any number of replicas) skip each
other's rows instead of waiting or double-claiming. DDL runs outside
transactions because MySQL commits implicitly on it.

The statements are in mysql_sql.py; the reads that go table by table come from
asyncflow.store.tables. Every operation runs in `_cursor`, where driver errors
that mean the database cannot serve become Unavailable.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

import aiomysql
import pymysql

from asyncflow.core.ids import new_task_ids, task_table
from asyncflow.core.model import (
    Claim,
    PoolUsage,
    Task,
    TaskChange,
    TaskInsert,
    TaskStatus,
    TaskTypeConfig,
)
from asyncflow.errors import ConfigError, TaskTypeNotFound, Unavailable
from asyncflow.store.common import (
    SCHEMA_VERSION,
    ClaimOne,
    InsertTarget,
    changed,
    claimed,
    config_params,
    fenced_update_params,
    insert_target,
    inserted,
    leased_update_params,
    lowest_requeued,
    migrations,
    oldest_first,
    row_to_config,
    row_to_task,
    schema_current,
    sql_text,
    statements,
)
from asyncflow.store.mysql_sql import (
    BEGIN_POS_ADVANCE,
    BEGIN_POS_LOWER,
    CLAIM,
    CLAIM_FENCED,
    CLAIMED_BY,
    CONFIG_SELECT,
    CONFIG_UPSERT,
    DATA_BEGIN_ADVANCE,
    DUE_IDS,
    DUE_LOCKED,
    DUE_ROWS,
    DUE_SCAN_LOCKED,
    END_POS_ADVANCE,
    END_POS_SELECT,
    EXTEND_LEASE,
    FENCE,
    INSERT_TARGET_LOCKED,
    INSERTED_COLUMNS,
    INSERTED_IDS,
    INSERTED_SELECT,
    KEY_INSERT,
    KEY_ROW,
    KEY_SELECT,
    KEYS_INSERT,
    KEYS_PRUNE,
    KEYS_SELECT,
    LEASED_LOCKED,
    LEASED_ROW,
    LIVE_TASK,
    NEWEST_CREATE,
    NOT_MINE,
    POS_INSERT,
    POS_LOCKED,
    QUIET_NOTES,
    ROW_VERSION,
    SCHEDULE_SQL,
    TABLE_SQL,
    TASK_INSERT,
    TASK_INSERT_GUARDED,
    TASK_ROW,
    UPDATE_FENCED,
    UPDATE_LEASED,
    UPDATE_LEASED_MANY,
    UPDATE_LEASED_SAME,
)
from asyncflow.store.operator import OperatorRows
from asyncflow.store.tables import ReadTable, Rows, TaskTableReads

T = TypeVar("T")

BATCH_ROWS = 1000
BATCH_BYTES = 4 << 20
"""Bounds of one multi-row update: well under max_allowed_packet (16 MiB by default)."""
CONTENDED_SECONDS = 10
"""How long a type's claims take the locking path after one lost rows to
another claimer (replicas draining the same type read the same oldest rows)."""
ER_DUP_ENTRY = 1062
INSERT_ATTEMPTS = 5
"""Guarded inserts tried before giving up (each failure is a split in between)."""
ER_NO_SUCH_TABLE = 1146
DATABASE_RE = re.compile(r"[A-Za-z0-9_]{1,64}")

_marks = TABLE_SQL.marks

# Server errors that mean "the database cannot serve now", not "this statement
# is wrong": too many connections, shutting down, lock wait timeout, deadlock
# victim, read-only (a failover in progress), connection killed, statement
# timeouts, idle connection closed. Client errors (2000-2999: cannot connect,
# server gone, connection lost) all mean it too.
UNAVAILABLE_CODES = frozenset({1040, 1053, 1205, 1213, 1290, 1836, 1927, 1969, 3024, 4031})


def _unavailable(exc: Exception) -> bool:
    if isinstance(exc, pymysql.err.InterfaceError | OSError):  # TimeoutError included
        return True
    if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InternalError) and exc.args:
        code = exc.args[0]
        return isinstance(code, int) and (2000 <= code < 3000 or code in UNAVAILABLE_CODES)
    return False


async def _inserted(cur: aiomysql.Cursor, sql: str, params: Sequence[Any]) -> bool:
    """Run an INSERT; False if it hit a unique key (the statement alone is undone,
    not the transaction)."""
    try:
        await cur.execute(sql, params)
    except pymysql.err.IntegrityError as exc:
        if exc.args[0] != ER_DUP_ENTRY:
            raise
        return False
    return True


async def _table_rows(cur: aiomysql.Cursor, sql: str, params: Sequence[Any]) -> Rows | None:
    """Rows of a read on one task table; None if the table does not exist."""
    try:
        await cur.execute(sql, params)
    except pymysql.err.ProgrammingError as exc:
        if exc.args and exc.args[0] == ER_NO_SUCH_TABLE:
            return None
        raise
    rows: Rows = list(await cur.fetchall())
    return rows


class _Moved(Exception):
    """A guarded insert found that its type's newest table is not the one it named."""

    def __init__(self, task_type: str) -> None:
        super().__init__(task_type)
        self.task_type = task_type


def _filled(results: list[Task | str | None]) -> list[Task | str]:
    """`results` once every one is set (one per task, in order)."""
    done = [r for r in results if r is not None]
    if len(done) != len(results):  # a bug, not bad input: never answer out of order
        raise RuntimeError(f"{len(results) - len(done)} inserts left without a result")
    return done


def _context_size(task: TaskInsert) -> int:
    return len(task.context) + 512


def _batches(items: list[T], size: Callable[[T], int]) -> Iterator[list[T]]:
    """`items` in runs of at most BATCH_ROWS items and (past the first) BATCH_BYTES."""
    batch: list[T] = []
    total = 0
    for item in items:
        if batch and (len(batch) == BATCH_ROWS or total + size(item) > BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size(item)
    if batch:
        yield batch


def _task_rows(
    escape: Callable[[str], str],
    target: InsertTarget,
    tasks: list[TaskInsert],
    ids: list[str],
    chunk: list[int],
    now: int,
) -> str:
    """The VALUES rows of TASK_INSERT for the tasks at `chunk`, as SQL text.

    aiomysql binds on the client: execute() quotes each value with the
    connection's escape() and %-formats the statement. This does the same, but
    quotes the values every row shares once and writes ints as they are:
    escaping 16,000 values one by one was ~16 % of a 1,000-task create_many's
    server CPU. Every string still goes through `escape`; the ints are ints.
    """
    task_type = escape(tasks[chunk[0]].task_type)
    shared = f"{target.max_retry_num:d}, {target.retry_interval:d}, {target.max_retry_interval:d}"
    blank = "''"
    rows = []
    for i in chunk:
        task = tasks[i]
        leased = target.leased(task, now)
        rows.append(TASK_ROW % (
            escape(ids[i]),
            task_type,
            escape(task.user_id) if task.user_id else blank,
            escape(task.task_stage) if task.task_stage else blank,
            f"{TaskStatus.PROCESSING if leased else TaskStatus.PENDING:d}",
            f"{task.priority:d}",
            shared,
            escape(task.context) if task.context else blank,
            f"{task.order_time:d}",
            escape(task.lease_token) if leased else blank,
            f"{leased:d}",
            f"{now + target.max_processing_time if leased else 0:d}",
            f"{now:d}",
            f"{now:d}",
        ))  # fmt: skip
    return ", ".join(rows)


async def _update_leased_rows(
    cur: aiomysql.Cursor,
    table: str,
    updates: list[tuple[Task, str, TaskChange]],
    indices: list[int],
    now: int,
) -> int:
    """The updates at `indices` (all in `table`, distinct tasks) in multi-row
    UPDATEs, each row fenced by its lease token and version; rows changed.

    When they all write the same values (a drain's successes), one
    UPDATE_LEASED_SAME per batch; else UPDATE_LEASED_MANY. Either way one
    statement per batch, its rows locked in id order (the caller's order), so
    two batches cannot deadlock."""
    if not indices:
        return 0
    total = 0
    first = updates[indices[0]][2]
    values = (int(first.status), first.task_stage, first.context, first.crt_retry_num,
              first.order_time, first.schedule_log)  # fmt: skip
    if all(updates[index][2] == first for index in indices):
        for batch in _batches(indices, lambda i: len(updates[i][1]) + 64):
            ids = [updates[index][0].row_id for index in batch]
            fences: list[Any] = []
            for index in batch:
                task, token, _ = updates[index]
                fences += (task.row_id, token, task.version)
            sql = UPDATE_LEASED_SAME.format(
                table=table, ids=_marks(ids), fences=", ".join([FENCE] * len(batch))
            )
            total += int(await cur.execute(sql, (*values, now, *ids, *fences)))
        return total
    for batch in _batches(indices, lambda i: len(updates[i][2].context) + 512):
        params: list[Any] = []
        for index in batch:
            task, token, change = updates[index]
            params += (task.row_id, token, task.version, int(change.status), change.task_stage,
                       change.context, change.crt_retry_num, change.order_time,
                       change.schedule_log)  # fmt: skip
        rows = " UNION ALL ".join([LEASED_ROW] + ["SELECT " + _marks(range(9))] * (len(batch) - 1))
        ids = [updates[index][0].row_id for index in batch]
        sql = UPDATE_LEASED_MANY.format(table=table, rows=rows, ids=_marks(ids))
        total += int(await cur.execute(sql, (*params, now, *ids)))
    return total


class MysqlStore(ClaimOne, TaskTableReads, OperatorRows):
    """TaskStore over an aiomysql pool (see module docstring)."""

    _sql = TABLE_SQL
    _schedule_sql = SCHEDULE_SQL

    def __init__(self, pool: aiomysql.Pool, *, returning: bool = False, tls: bool = False) -> None:
        self._pool = pool
        self._returning = returning
        """INSERT ... RETURNING (MariaDB 10.5+); else the new rows are read back."""
        self._newest: dict[str, int] = {}
        """The newest table of each type as last seen: where creates insert (guarded)."""
        self._tls = tls
        """Every connection must be encrypted (store.mysql_tls_ca_file)."""
        self._contended: dict[str, int] = {}
        """Per type, until when (Unix seconds) claims take the locking path: a
        claim lost rows to another replica's lately (see task_claim_due_many)."""

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
        tls: ssl.SSLContext | None = None,
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
            "ssl": tls,
        }
        try:
            if create_database:
                conn = await aiomysql.connect(**common)
                try:
                    check_encrypted(conn, tls is not None)
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
        store = cls(pool, tls=tls is not None)
        try:  # through the store's own checks (TLS): fail at start, not at the first call
            async with store._cursor() as cur:
                await cur.execute("SELECT VERSION()")
                (version,) = await cur.fetchone()
        except Unavailable:
            await store.close()
            raise
        store._returning = "mariadb" in str(version).lower()
        return store

    async def close(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()

    async def schema_ready(self) -> bool:
        async with self._cursor() as cur:
            return schema_current("mysql", await _table_rows(cur, SCHEMA_VERSION, ()))

    def pool_usage(self) -> PoolUsage:
        pool = self._pool
        return PoolUsage(in_use=pool.size - pool.freesize, open=pool.size, limit=pool.maxsize)

    @asynccontextmanager
    async def _cursor(self) -> AsyncIterator[aiomysql.Cursor]:
        """A cursor in autocommit. Every operation runs in one of these: the edge
        where a database that cannot serve becomes Unavailable."""
        if self._pool.closed:
            raise Unavailable("the MySQL store is closed")
        try:
            async with self._pool.acquire() as conn, conn.cursor() as cur:
                check_encrypted(conn, self._tls)
                yield cur
        except Exception as exc:
            if _unavailable(exc):
                raise Unavailable(f"MySQL unavailable: {exc}") from exc
            raise

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

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[ReadTable]:
        async with self._cursor() as cur:
            yield partial(_table_rows, cur)

    async def _statement(self, sql: str, params: Sequence[Any]) -> tuple[int, Rows]:
        async with self._cursor() as cur:
            changed = await cur.execute(sql, params)
            rows: Rows = list(await cur.fetchall())
        return int(changed), rows

    async def _insert(self, sql: str, params: Sequence[Any]) -> bool:
        async with self._cursor() as cur:
            return await _inserted(cur, sql, params)

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
        if moved == 1:
            self._newest[config.task_type] = config.end_pos + 1  # spares a failed guard
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
                newest = await _table_rows(cur, NEWEST_CREATE.format(table=table), ())
                if newest and newest[0][0] >= created_before:
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

    # -- tasks (the reads table by table come from TaskTableReads) ---------------

    async def task_insert_many(self, tasks: list[TaskInsert], now: int) -> list[Task | str]:
        for _ in range(INSERT_ATTEMPTS):
            newest = await self._newest_tables({t.task_type for t in tasks})
            try:
                return await self._insert_at(tasks, newest, now)
            except _Moved as moved:  # a split: nothing was written; look again
                self._newest.pop(moved.task_type, None)
        raise Unavailable("the task tables kept moving under the insert; try again")

    async def _newest_tables(self, task_types: set[str]) -> dict[str, int]:
        """The newest table of each type, read only for the types not seen yet."""
        unseen = sorted(task_types - self._newest.keys())
        if unseen:
            async with self._cursor() as cur:
                for task_type in unseen:
                    await cur.execute(END_POS_SELECT, (task_type,))
                    row = await cur.fetchone()
                    if row is None:
                        raise TaskTypeNotFound(
                            f"task type {task_type!r} is not registered", field="task_type"
                        )
                    self._newest[task_type] = int(row[0])
        return {task_type: self._newest[task_type] for task_type in task_types}

    async def _insert_at(
        self, tasks: list[TaskInsert], newest: dict[str, int], now: int
    ) -> list[Task | str]:
        ids = new_task_ids([(t.task_type, newest[t.task_type], t.idempotency_key) for t in tasks])
        results: list[Task | str | None] = [None] * len(tasks)
        chunks = [
            (task_type, chunk)
            for task_type in sorted(newest)  # one lock order
            for chunk in _batches(
                [i for i, t in enumerate(tasks) if t.task_type == task_type],
                lambda i: _context_size(tasks[i]),
            )
        ]
        if len(tasks) == 1 and tasks[0].idempotency_key is None:
            # One guarded statement is atomic on its own: autocommit spares BEGIN
            # and COMMIT (the one-by-one create, handed off or not).
            async with self._cursor() as cur:
                await self._insert_rows(cur, tasks, ids, [0], newest[tasks[0].task_type], now,
                                        results)  # fmt: skip
            return _filled(results)
        async with self._tx() as cur:
            twins = await self._claim_keys(cur, tasks, ids, now, results)
            for task_type, chunk in chunks:
                todo = [i for i in chunk if results[i] is None]
                if todo:
                    await self._insert_rows(cur, tasks, ids, todo, newest[task_type], now, results)
        for twin, first in twins:  # a key twice in one call: the second names the first's task
            named = results[first]
            results[twin] = named if isinstance(named, str) else ids[first]
        return _filled(results)

    async def _claim_keys(
        self,
        cur: aiomysql.Cursor,
        tasks: list[TaskInsert],
        ids: list[str],
        now: int,
        results: list[Task | str | None],
    ) -> list[tuple[int, int]]:
        """Insert the idempotency keys (one statement per type and chunk); a key
        already used sets its task's result to the task id it names. Returns the
        (index, index of the first) pairs of keys given twice in this call; their
        results hold a placeholder ("") until the caller fills them in."""
        first: dict[tuple[str, str], int] = {}
        twins: list[tuple[int, int]] = []
        by_type: dict[str, list[int]] = {}
        for index, task in enumerate(tasks):
            if task.idempotency_key is None:
                continue
            key = (task.task_type, task.idempotency_key)
            if key in first:
                twins.append((index, first[key]))
                results[index] = ""  # not a task row to insert; set by the caller
            else:
                first[key] = index
                by_type.setdefault(task.task_type, []).append(index)
        for task_type, indices in sorted(by_type.items()):
            indices.sort(key=lambda i: tasks[i].idempotency_key or "")  # one lock order
            for start in range(0, len(indices), BATCH_ROWS):
                chunk = indices[start : start + BATCH_ROWS]
                if len(chunk) == 1:  # no read first: a taken key fails its insert
                    await self._insert_keys(cur, tasks, ids, chunk, now, results)
                    continue
                keys = [tasks[i].idempotency_key for i in chunk]
                await cur.execute(KEYS_SELECT.format(ids=_marks(keys)), (task_type, *keys))
                used = dict(await cur.fetchall())
                new = []
                for i in chunk:
                    if tasks[i].idempotency_key in used:
                        results[i] = used[tasks[i].idempotency_key]
                    else:
                        new.append(i)
                if new:
                    await self._insert_keys(cur, tasks, ids, new, now, results)
        return twins

    @staticmethod
    async def _insert_keys(
        cur: aiomysql.Cursor,
        tasks: list[TaskInsert],
        ids: list[str],
        new: list[int],
        now: int,
        results: list[Task | str | None],
    ) -> None:
        params: list[Any] = []
        for i in new:
            params += (tasks[i].task_type, tasks[i].idempotency_key, ids[i], now)
        rows = ", ".join([KEY_ROW] * len(new))
        if len(new) > 1 and await _inserted(cur, KEYS_INSERT.format(rows=rows), params):
            return
        # One key, or another call took one of these keys since the read: key by key.
        for i in new:
            key = (tasks[i].task_type, tasks[i].idempotency_key)
            if not await _inserted(cur, KEY_INSERT, (*key, ids[i], now)):
                await cur.execute(KEY_SELECT, key)
                results[i] = (await cur.fetchone())[0]

    async def _insert_rows(
        self,
        cur: aiomysql.Cursor,
        tasks: list[TaskInsert],
        ids: list[str],
        chunk: list[int],
        pos: int,
        now: int,
        results: list[Task | str | None],
    ) -> None:
        """Insert the tasks at `chunk` (one type) into table `pos`, guarded (see
        TASK_INSERT_GUARDED); _Moved if the guard failed. Several tasks need a
        transaction: the locked guard read, then the multi-row insert."""
        task_type = tasks[chunk[0]].task_type
        table = task_table(task_type, pos)
        target: InsertTarget | None = None
        params: list[Any] | None
        if len(chunk) == 1:
            task = tasks[chunk[0]]
            token = task.lease_token if task.order_time <= now else ""  # see InsertTarget.leased
            sql = TASK_INSERT_GUARDED.format(table=table)
            params = [ids[chunk[0]], task.user_id, task.task_stage, task.priority]
            params += (task.context, task.order_time, now, now, now, token, task_type, pos)
            returning = INSERTED_COLUMNS
        else:
            await cur.execute(INSERT_TARGET_LOCKED, (task_type, pos))
            row = await cur.fetchone()
            if row is None:
                raise _Moved(task_type)
            target = insert_target(task_type, row)
            rows = _task_rows(cur.connection.escape, target, tasks, ids, chunk, now)
            sql, params = TASK_INSERT.format(table=table, rows=rows), None
            returning = INSERTED_IDS  # the type's settings were read above
        if self._returning:
            sql += " RETURNING " + returning
        try:
            count = await cur.execute(sql, params)
        except pymysql.err.IntegrityError as exc:
            if exc.args[0] != ER_DUP_ENTRY:
                raise
            # A key that names a task created without one (its id is taken):
            # the statement alone was undone; row by row finds which.
            if len(chunk) == 1:
                results[chunk[0]] = ids[chunk[0]]
                return
            for i in chunk:
                await self._insert_rows(cur, tasks, ids, [i], pos, now, results)
            return
        if self._returning:
            written = await cur.fetchall()
        elif count:
            chosen = [ids[i] for i in chunk]
            await cur.execute(INSERTED_SELECT.format(table=table, ids=_marks(chosen)), chosen)
            written = await cur.fetchall()
        else:
            written = ()
        if not written:
            raise _Moved(task_type)
        if len(written) != len(chunk):  # one position row joined: all or nothing
            raise RuntimeError(f"inserted {len(written)} of {len(chunk)} tasks")
        if target is None:
            # The guarded statement read the type's settings itself, and leased
            # its one task (status PROCESSING) unless the type was paused.
            _, _, max_retry_num, retry_interval, max_retry_interval, status, deadline = written[0]
            leased = status == TaskStatus.PROCESSING
            target = InsertTarget(pos, max_retry_num, retry_interval, max_retry_interval,
                                  deadline - now if leased else 0, paused=not leased)  # fmt: skip
        by_id = {row[1]: row[0] for row in written}
        for i in chunk:
            results[i] = inserted(tasks[i], ids[i], target, int(by_id[ids[i]]), now)

    async def task_claim_due_many(
        self, config: TaskTypeConfig, claims: list[tuple[int, Claim]]
    ) -> list[list[Task]]:
        """Uncontended (one replica: its holds share one claim round), a claim is a
        plain read of the due rows and, per hold, one UPDATE in autocommit fenced
        by each row's version: the rows it changed are exactly the rows read, and
        one statement needs no BEGIN, locking read or COMMIT (three round trips
        of six). A hold that lost rows to another claimer (another replica) tops
        up through the locking path, which skips past the other's rows, and the
        type's claims take that path for CONTENDED_SECONDS."""
        now = claims[0][1].now
        if now < self._contended.get(config.task_type, 0):
            return await self._claim_locked(config, claims)
        total = sum(limit for limit, _ in claims)
        results: list[list[Task]] = []
        short: list[int] = []  # the holds that lost rows to another claimer
        async with self._cursor() as cur:
            read: dict[tuple[int, int], Task] = {}
            sizes: dict[tuple[int, int], int] = {}
            for pos in range(config.begin_pos, config.end_pos + 1):
                await cur.execute(DUE_ROWS.format(table=task_table(config.task_type, pos)),
                                  (now, total))  # fmt: skip
                for row in await cur.fetchall():
                    task = row_to_task(row, pos)
                    read[(pos, task.row_id)] = task
                    sizes[(pos, task.row_id)] = int(row[-1])
            shares = oldest_first(
                ((t.order_time, t.pos, t.row_id, sizes[key]) for key, t in read.items()),
                [(limit, claim.max_bytes) for limit, claim in claims],
            )
            for (_, claim), chosen in zip(claims, shares, strict=True):
                result: list[Task] = []
                for pos, ids in chosen.items():
                    table = task_table(config.task_type, pos)
                    fences: list[int] = []
                    for row_id in ids:
                        fences += (row_id, read[(pos, row_id)].version)
                    sql = CLAIM_FENCED.format(
                        table=table, ids=_marks(ids), fences=", ".join([ROW_VERSION] * len(ids))
                    )
                    updated = await cur.execute(
                        sql, (claim.token, claim.deadline, claim.now, *ids, *fences)
                    )
                    if updated != len(ids):  # another claimer took some: which are ours?
                        await cur.execute(CLAIMED_BY.format(table=table, ids=_marks(ids)),
                                          (*ids, claim.token))  # fmt: skip
                        ours = {row[0] for row in await cur.fetchall()}
                        ids = [row_id for row_id in ids if row_id in ours]
                    result.extend(claimed(read[(pos, row_id)], claim) for row_id in ids)
                # Topped up only while no byte budget is half used (the top-up's
                # first row always goes, whatever its size); else the stream asks
                # again at once, as after any short hold.
                lost = len(result) < sum(map(len, chosen.values()))
                if lost:
                    # Replicas read the same oldest rows: while they compete,
                    # the locking path (which skips the other's rows) is cheaper.
                    self._contended[config.task_type] = now + CONTENDED_SECONDS
                if lost and (not result or not claim.max_bytes):
                    short.append(len(results))
                results.append(result)
        if short:
            more = [(claims[i][0] - len(results[i]), claims[i][1]) for i in short]
            for index, topped in zip(short, await self._claim_locked(config, more), strict=True):
                results[index] += topped
        for result in results:
            result.sort(key=lambda t: (t.order_time, t.pos, t.row_id))
        return results

    async def _claim_locked(
        self, config: TaskTypeConfig, claims: list[tuple[int, Claim]]
    ) -> list[list[Task]]:
        """The claim under contention: candidates locked by primary key (SKIP
        LOCKED), then, if another claimer holds some, a locking scan for the rest."""
        now = claims[0][1].now
        total = sum(limit for limit, _ in claims)
        results: list[list[Task]] = []
        async with self._tx() as cur:
            locked: dict[tuple[int, int], Task] = {}
            sizes: dict[tuple[int, int], int] = {}
            for pos in range(config.begin_pos, config.end_pos + 1):
                table = task_table(config.task_type, pos)
                await cur.execute(DUE_IDS.format(table=table), (now, total))
                due = [row[0] for row in await cur.fetchall()]
                if not due:
                    continue
                await cur.execute(DUE_LOCKED.format(table=table, ids=_marks(due)), (*due, now))
                rows = list(await cur.fetchall())
                if len(rows) < len(due) == total:
                    # Another claimer took some: the rest, skipping past its rows.
                    # Ours are left out (a locking read would see them again),
                    # so none is locked and then left unclaimed.
                    mine = NOT_MINE.format(ids=_marks(rows)) if rows else ""
                    sql = DUE_SCAN_LOCKED.format(table=table, mine=mine)
                    await cur.execute(sql, (now, *(row[0] for row in rows), total - len(rows)))
                    rows += await cur.fetchall()
                for row in rows:
                    task = row_to_task(row, pos)
                    locked[(pos, task.row_id)] = task
                    sizes[(pos, task.row_id)] = int(row[-1])
            # Rows locked but not chosen (over the limits or the byte budgets) are
            # unlocked untouched at commit.
            shares = oldest_first(
                ((t.order_time, t.pos, t.row_id, sizes[key]) for key, t in locked.items()),
                [(limit, claim.max_bytes) for limit, claim in claims],
            )
            for (_, claim), chosen in zip(claims, shares, strict=True):
                result: list[Task] = []
                for pos, ids in chosen.items():
                    sql = CLAIM.format(table=task_table(config.task_type, pos), ids=_marks(ids))
                    updated = await cur.execute(sql, (claim.token, claim.deadline, claim.now, *ids))
                    if updated != len(ids):  # the rows are locked by us: cannot happen
                        raise RuntimeError(f"claimed {updated} of {len(ids)} locked rows")
                    result.extend(claimed(locked[(pos, row_id)], claim) for row_id in ids)
                result.sort(key=lambda t: (t.order_time, t.pos, t.row_id))
                results.append(result)
        return results

    async def task_update_leased_many(
        self, updates: list[tuple[Task, str, TaskChange]], now: int
    ) -> list[Task | None]:
        if len(updates) == 1:
            # A single update is atomic on its own: autocommit spares the
            # BEGIN/COMMIT round trips, and its WHERE clause is the fence.
            ((task, token, change),) = updates
            async with self._cursor() as cur:
                sql = UPDATE_LEASED.format(table=task_table(task.task_type, task.pos))
                updated = await cur.execute(sql, leased_update_params(task, token, change, now))
            return [changed(task, change, now) if updated == 1 else None]
        results: list[Task | None] = [None] * len(updates)
        tables: dict[tuple[str, int], list[int]] = {}
        for index, (task, _, _) in enumerate(updates):
            tables.setdefault((task.task_type, task.pos), []).append(index)
        distinct = len({(t.task_type, t.pos, t.row_id) for t, _, _ in updates}) == len(updates)
        if distinct and await self._update_leased_all(tables, updates, now):
            return [changed(task, change, now) for task, _, change in updates]
        async with self._tx() as cur:
            for (task_type, pos), indices in sorted(tables.items()):  # one lock order
                table = task_table(task_type, pos)
                for index in await self._update_leased_table(cur, table, updates, indices, now):
                    task, _, change = updates[index]
                    results[index] = changed(task, change, now)
        return results

    async def _update_leased_all(
        self,
        tables: dict[tuple[str, int], list[int]],
        updates: list[tuple[Task, str, TaskChange]],
        now: int,
    ) -> bool:
        """The usual case first: every update still holds its lease. Fenced
        multi-row UPDATEs, no read: committed if they changed every row, else
        rolled back (the caller then finds out which still hold, under locks)."""
        async with self._cursor() as cur:
            await cur.connection.begin()
            try:
                updated = 0
                for (task_type, pos), indices in sorted(tables.items()):  # one lock order
                    ordered = sorted(indices, key=lambda i: updates[i][0].row_id)
                    updated += await _update_leased_rows(
                        cur, task_table(task_type, pos), updates, ordered, now
                    )
            except BaseException:
                await cur.connection.rollback()
                raise
            if updated != len(updates):
                await cur.connection.rollback()
                return False
            await cur.connection.commit()
        return True

    @staticmethod
    async def _update_leased_table(
        cur: aiomysql.Cursor,
        table: str,
        updates: list[tuple[Task, str, TaskChange]],
        indices: list[int],
        now: int,
    ) -> list[int]:
        """Apply the updates at `indices` (all in `table`) that still hold their
        lease, each task at most once; return the indices applied."""
        ids = sorted({updates[i][0].row_id for i in indices})
        await cur.execute(LEASED_LOCKED.format(table=table, ids=_marks(ids)), ids)
        current = {row[0]: (row[1], row[2]) for row in await cur.fetchall()}
        applied = []
        for index in indices:
            task, token, _ = updates[index]
            if current.get(task.row_id) == (token, task.version):
                del current[task.row_id]  # a second report of the same task loses
                applied.append(index)
        if await _update_leased_rows(cur, table, updates, applied, now) != len(applied):
            raise RuntimeError(f"updated fewer than {len(applied)} locked rows")  # cannot happen
        return applied

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

    async def task_update_fenced_many(
        self, updates: list[tuple[Task, TaskChange]], now: int
    ) -> list[Task | None]:
        results: list[Task | None] = [None] * len(updates)
        requeuing = sorted({t.task_type for t, c in updates if c.status is TaskStatus.PENDING})
        async with self._tx() as cur:
            # The position rows first, as begin_pos advances lock them: neither can
            # retire a table while the other puts a pending task into it.
            for task_type in requeuing:
                await cur.execute(POS_LOCKED, (task_type,))
            # Rows in one order, so two bulk actions cannot deadlock each other.
            order = sorted(range(len(updates)), key=lambda i: _row_key(updates[i][0]))
            for index in order:
                task, change = updates[index]
                sql = UPDATE_FENCED.format(table=task_table(task.task_type, task.pos))
                if await cur.execute(sql, fenced_update_params(task, change, now)) == 1:
                    results[index] = changed(task, change, now)
            for task_type, pos in lowest_requeued(updates, results).items():
                await cur.execute(BEGIN_POS_LOWER, (pos, now, task_type, pos))
        return results


def _row_key(task: Task) -> tuple[str, int, int]:
    return task.task_type, task.pos, task.row_id


def check_encrypted(conn: aiomysql.Connection, required: bool) -> None:
    """aiomysql silently stays in plaintext when the server offers no TLS: with TLS
    configured, such a connection is closed and refused instead."""
    if required and conn._writer.get_extra_info("ssl_object") is None:
        conn.close()
        raise Unavailable(
            "the MySQL connection is not encrypted (the server offered no TLS) although"
            " store.mysql_tls_ca_file is set"
        )
