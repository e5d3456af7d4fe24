"""The embedded store: SQLite in one file, for `asyncflow serve` with no database server.

One dedicated thread owns the connection and runs every operation as a whole
(a transaction where it writes more than one statement), so operations are
serialised: SQLite has one writer anyway, and the event loop never blocks on
disk. Claims use BEGIN IMMEDIATE and UPDATE ... RETURNING.

The statements are in sqlite_sql.py; the reads that go table by table come from
asyncflow.store.tables. Every operation runs through `_run`, where a locked,
busy or failing database becomes Unavailable.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from asyncflow.core.ids import new_task_ids, task_table
from asyncflow.core.model import Claim, PoolUsage, Task, TaskChange, TaskInsert, TaskTypeConfig
from asyncflow.errors import ConfigError, Unavailable
from asyncflow.store.common import (
    SCHEMA_VERSION,
    ClaimOne,
    InsertTarget,
    changed,
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
from asyncflow.store.operator import OperatorRows
from asyncflow.store.sqlite_sql import (
    BEGIN_POS_ADVANCE,
    BEGIN_POS_LOWER,
    CLAIM,
    CONFIG_SELECT,
    CONFIG_UPSERT,
    DATA_BEGIN_ADVANCE,
    DUE_CANDIDATES,
    END_POS_ADVANCE,
    EXTEND_LEASE,
    INSERT_ROWS,
    INSERT_TARGET,
    KEY_INSERT,
    KEY_SELECT,
    KEYS_PRUNE,
    LIVE_TASK,
    NEWEST_CREATE,
    POS_INSERT,
    POS_SELECT,
    SCHEDULE_SQL,
    TABLE_SQL,
    TASK_INSERT,
    TASK_INSERT_ROWS,
    TASK_ROW,
    UPDATE_FENCED,
    UPDATE_LEASED,
)
from asyncflow.store.tables import ReadTable, Rows, TaskTableReads

T = TypeVar("T")

# Failures of the database, not of the statement: another process holds the
# lock past busy_timeout, the disk fails or is full, the file cannot be opened.
UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_READONLY,
    }
)
SYNCHRONOUS = ("full", "normal")
"""PRAGMA synchronous levels a config may choose: FULL (the default) syncs the
WAL on every commit, so an acknowledged write survives a power loss; NORMAL
syncs only at checkpoints (faster; the last commits may be lost on power loss,
never on a process crash)."""


def _first(cursor: sqlite3.Cursor) -> Any:
    """The first row or None, with the statement run to completion (an unfinished
    statement would keep COMMIT from succeeding)."""
    rows = cursor.fetchall()
    return rows[0] if rows else None


def _unavailable(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in UNAVAILABLE_CODES


def _table_rows(db: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Rows | None:
    """Rows of a read on one task table; None if the table does not exist."""
    try:
        return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise


def _inserted(db: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int | None:
    """Run an INSERT: the new rowid, or None if it hit a unique key (the
    statement alone is undone, not the transaction)."""
    try:
        cursor = db.execute(sql, params)
    except sqlite3.IntegrityError as exc:
        if exc.sqlite_errorcode in (sqlite3.SQLITE_CONSTRAINT_UNIQUE,
                                    sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY):  # fmt: skip
            return None
        raise
    assert cursor.lastrowid is not None
    return cursor.lastrowid


class SqliteStore(ClaimOne, TaskTableReads, OperatorRows):
    """TaskStore over one SQLite file (see module docstring)."""

    _sql = TABLE_SQL
    _schedule_sql = SCHEDULE_SQL

    def __init__(self, path: str, *, synchronous: str = "full", busy_timeout_ms: int = 5000
                 ) -> None:  # fmt: skip
        if synchronous not in SYNCHRONOUS:
            raise ConfigError(f"store.sqlite_synchronous: must be one of {SYNCHRONOUS}")
        self._path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asyncflow-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._running = 0
        """Operations submitted to the thread and not finished."""

    @classmethod
    async def open(
        cls, path: str, *, synchronous: str = "full", busy_timeout_ms: int = 5000
    ) -> SqliteStore:
        store = cls(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        try:
            await store._run(store._connect)
        except BaseException:
            store._executor.shutdown(wait=False)
            raise
        return store

    def _connect(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")  # one of SYNCHRONOUS
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        self._conn = conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the store's thread; the one edge where sqlite3 errors are
        translated (a database that cannot serve becomes Unavailable)."""
        if self._closed:
            raise Unavailable("the SQLite store is closed")
        self._running += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, partial(fn, *args)
            )
        except sqlite3.Error as exc:
            if _unavailable(exc):
                raise Unavailable(f"SQLite unavailable: {exc}") from exc
            raise
        finally:
            self._running -= 1

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise Unavailable("the SQLite store is closed")
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # COMMIT itself may have failed (busy, I/O)
                conn.execute("ROLLBACK")
            raise

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[ReadTable]:
        async def read(sql: str, params: Sequence[Any]) -> Rows | None:
            return await self._run(lambda: _table_rows(self._db, sql, params))

        yield read

    async def _statement(self, sql: str, params: Sequence[Any]) -> tuple[int, Rows]:
        def run() -> tuple[int, Rows]:
            cursor = self._db.execute(sql, params)
            rows: Rows = cursor.fetchall()
            return cursor.rowcount, rows

        return await self._run(run)

    async def _insert(self, sql: str, params: Sequence[Any]) -> bool:
        return await self._run(lambda: _inserted(self._db, sql, params) is not None)

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._db.close)
            self._conn = None
        self._closed = True
        self._executor.shutdown(wait=True)

    def pool_usage(self) -> PoolUsage:
        connected = int(self._conn is not None)
        return PoolUsage(in_use=min(self._running, connected), open=connected, limit=1)

    # -- schema ---------------------------------------------------------------

    async def schema_ready(self) -> bool:
        return await self._run(self._schema_ready)

    def _schema_ready(self) -> bool:
        # The write lock, not a read: in WAL mode reads go on while another
        # process holds the file, but this server could then serve no write.
        with self._tx() as db:
            return schema_current("sqlite", _table_rows(db, SCHEMA_VERSION, ()))

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
                newest = _table_rows(db, NEWEST_CREATE.format(table=table), ())
                if newest and newest[0][0] >= created_before:
                    break
                db.execute(f"DROP TABLE IF EXISTS {table}")
                db.execute(DATA_BEGIN_ADVANCE, (config.task_type, retired))
                dropped.append(retired)
        return dropped

    async def keys_prune(self, task_type: str, created_before: int, limit: int) -> int:
        return await self._run(self._keys_prune, task_type, created_before, limit)

    def _keys_prune(self, task_type: str, created_before: int, limit: int) -> int:
        return int(self._db.execute(KEYS_PRUNE, (task_type, created_before, limit)).rowcount)

    # -- tasks (the reads table by table come from TaskTableReads) ---------------

    async def task_insert_many(self, tasks: list[TaskInsert], now: int) -> list[Task | str]:
        return await self._run(self._task_insert_many, tasks, now)

    def _task_insert_many(self, tasks: list[TaskInsert], now: int) -> list[Task | str]:
        results: list[Task | str | None] = [None] * len(tasks)
        with self._tx() as db:
            targets = {}
            for task_type in sorted({t.task_type for t in tasks}):
                row = _first(db.execute(INSERT_TARGET, (task_type,)))
                targets[task_type] = insert_target(task_type, row)
            ids = new_task_ids(
                [(t.task_type, targets[t.task_type].pos, t.idempotency_key) for t in tasks]
            )
            by_type: dict[str, list[int]] = {}
            for index, task in enumerate(tasks):
                if task.idempotency_key is not None:
                    key = (task.task_type, task.idempotency_key)
                    if _inserted(db, KEY_INSERT, (*key, ids[index], now)) is None:
                        results[index] = _first(db.execute(KEY_SELECT, key))[0]
                        continue
                by_type.setdefault(task.task_type, []).append(index)
            for task_type, indices in by_type.items():
                for start in range(0, len(indices), INSERT_ROWS):
                    chunk = indices[start : start + INSERT_ROWS]
                    self._insert_rows(db, tasks, ids, chunk, targets[task_type], now, results)
        return [r for r in results if r is not None]

    @staticmethod
    def _insert_rows(
        db: sqlite3.Connection,
        tasks: list[TaskInsert],
        ids: list[str],
        chunk: list[int],
        target: InsertTarget,
        now: int,
        results: list[Task | str | None],
    ) -> None:
        """Insert the tasks at `chunk` (one table) with one statement."""
        table = task_table(tasks[chunk[0]].task_type, target.pos)
        sql = TASK_INSERT_ROWS.format(table=table, rows=", ".join([TASK_ROW] * len(chunk)))
        params = [v for i in chunk for v in target.params(tasks[i], ids[i], now)]
        try:
            row_ids = dict((task_id, row_id) for row_id, task_id in db.execute(sql, params))
        except sqlite3.IntegrityError:
            # A key that names a task created without one (its id is taken): the
            # statement alone was undone; row by row finds which.
            for i in chunk:
                insert = TASK_INSERT.format(table=table)
                row_id = _inserted(db, insert, target.params(tasks[i], ids[i], now))
                results[i] = (
                    ids[i] if row_id is None else inserted(tasks[i], ids[i], target, row_id, now)
                )
            return
        for i in chunk:
            results[i] = inserted(tasks[i], ids[i], target, row_ids[ids[i]], now)

    async def task_claim_due_many(
        self, config: TaskTypeConfig, claims: list[tuple[int, Claim]]
    ) -> list[list[Task]]:
        return await self._run(self._task_claim_due_many, config, claims)

    def _task_claim_due_many(
        self, config: TaskTypeConfig, claims: list[tuple[int, Claim]]
    ) -> list[list[Task]]:
        now = claims[0][1].now
        total = sum(limit for limit, _ in claims)
        results: list[list[Task]] = []
        with self._tx() as db:
            candidates = [
                (order_time, pos, row_id, size)
                for pos in range(config.begin_pos, config.end_pos + 1)
                for order_time, row_id, size in db.execute(
                    DUE_CANDIDATES.format(table=task_table(config.task_type, pos)), (now, total)
                )
            ]
            wants = [(limit, claim.max_bytes) for limit, claim in claims]
            for (_, claim), chosen in zip(claims, oldest_first(candidates, wants), strict=True):
                claimed: list[Task] = []
                for pos, ids in chosen.items():
                    sql = CLAIM.format(
                        table=task_table(config.task_type, pos), ids=TABLE_SQL.marks(ids)
                    )
                    rows = db.execute(sql, (claim.token, claim.deadline, claim.now, *ids))
                    claimed.extend(row_to_task(row, pos) for row in rows)
                claimed.sort(key=lambda t: (t.order_time, t.pos, t.row_id))
                results.append(claimed)
        return results

    async def task_update_leased_many(
        self, updates: list[tuple[Task, str, TaskChange]], now: int
    ) -> list[Task | None]:
        return await self._run(self._task_update_leased_many, updates, now)

    def _task_update_leased_many(
        self, updates: list[tuple[Task, str, TaskChange]], now: int
    ) -> list[Task | None]:
        # One writer and no round trips: a statement per task costs nothing more
        # than a multi-row one would.
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

    async def task_update_fenced_many(
        self, updates: list[tuple[Task, TaskChange]], now: int
    ) -> list[Task | None]:
        return await self._run(self._task_update_fenced_many, updates, now)

    def _task_update_fenced_many(
        self, updates: list[tuple[Task, TaskChange]], now: int
    ) -> list[Task | None]:
        results: list[Task | None] = []
        with self._tx() as db:  # one writer: begin_pos cannot move meanwhile
            for task, change in updates:
                sql = UPDATE_FENCED.format(table=task_table(task.task_type, task.pos))
                updated = db.execute(sql, fenced_update_params(task, change, now)).rowcount
                results.append(changed(task, change, now) if updated == 1 else None)
            for task_type, pos in lowest_requeued(updates, results).items():
                db.execute(BEGIN_POS_LOWER, (pos, now, task_type, pos))
        return results
