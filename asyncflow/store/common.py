"""What both backends share: column lists, row decoding, migrations on disk.

Nothing here is dialect-specific; each backend keeps its own SQL text.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from typing import Any

from asyncflow.core.model import (
    Claim,
    RetryPolicy,
    RetryStrategy,
    Task,
    TaskChange,
    TaskFilter,
    TaskInsert,
    TaskStatus,
    TaskTypeConfig,
    task_from_fields,
    task_with,
)
from asyncflow.errors import TaskTypeNotFound

TASK_COLUMNS = (
    "id, task_id, task_type, user_id, task_stage, status, priority, crt_retry_num,"
    " max_retry_num, retry_interval, max_retry_interval, task_context, schedule_log,"
    " order_time, lease_token, hold_count, lease_deadline, version, create_time, modify_time"
)

CONFIG_COLUMNS = (
    "c.task_type, c.schedule_limit, c.schedule_interval, c.max_processing_time,"
    " c.max_retry_num, c.retry_interval, c.max_retry_interval,"
    " p.schedule_begin_pos, p.schedule_end_pos, p.data_begin_pos, c.create_time,"
    " c.modify_time, c.paused"
)

_MIGRATION_RE = re.compile(r"(?P<dialect>[a-z]+)_(?P<version>\d{4})_(?P<name>\w+)\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: list[str]


def sql_text(name: str) -> str:
    return resources.files("asyncflow.store").joinpath("sql", name).read_text("utf-8")


def statements(text: str) -> list[str]:
    """Split a .sql file on ';' at line ends, dropping comment-only pieces."""
    pieces = re.split(r";\s*\n", text)
    out = []
    for piece in pieces:
        body = (
            "\n".join(line for line in piece.splitlines() if not line.strip().startswith("--"))
            .strip()
            .rstrip(";")
        )
        if body:
            out.append(body)
    return out


def migrations(dialect: str) -> list[Migration]:
    """The numbered migrations of a dialect, in order."""
    found = []
    for entry in resources.files("asyncflow.store").joinpath("sql").iterdir():
        match = _MIGRATION_RE.fullmatch(entry.name)
        if match and match["dialect"] == dialect:
            found.append(
                Migration(
                    int(match["version"]), match["name"], statements(entry.read_text("utf-8"))
                )
            )
    return sorted(found, key=lambda m: m.version)


SCHEMA_VERSION = "SELECT MAX(version) FROM asyncflow_migrations"
"""The newest migration applied (a primary-key read)."""


def schema_current(dialect: str, rows: Sequence[Sequence[Any]] | None) -> bool:
    """Whether SCHEMA_VERSION's rows (None: no migrations table yet) show every
    migration of `dialect` applied."""
    latest = max(m.version for m in migrations(dialect))
    return rows is not None and int(rows[0][0] or 0) >= latest


def encode_retry(policy: RetryPolicy) -> tuple[int, int]:
    """Stored as the original's columns: a negative retry_interval means uniform."""
    sign = -1 if policy.strategy is RetryStrategy.UNIFORM else 1
    return sign * policy.interval, policy.max_interval


@lru_cache(maxsize=1024)
def decode_retry(retry_interval: int, max_retry_interval: int) -> RetryPolicy:
    if retry_interval < 0:
        return RetryPolicy(RetryStrategy.UNIFORM, -retry_interval, max_retry_interval)
    return RetryPolicy(RetryStrategy.PROGRESSIVE, retry_interval, max_retry_interval)


def row_to_task(row: Sequence[Any], pos: int) -> Task:
    return task_from_fields({
        "row_id": int(row[0]),
        "task_id": row[1],
        "task_type": row[2],
        "pos": pos,
        "user_id": row[3],
        "task_stage": row[4],
        "status": TaskStatus(int(row[5])),
        "priority": int(row[6]),
        "crt_retry_num": int(row[7]),
        "max_retry_num": int(row[8]),
        "retry": decode_retry(int(row[9]), int(row[10])),
        "context": row[11],
        "schedule_log": row[12],
        "order_time": int(row[13]),
        "lease_token": row[14],
        "hold_count": int(row[15]),
        "lease_deadline": int(row[16]),
        "version": int(row[17]),
        "create_time": int(row[18]),
        "modify_time": int(row[19]),
    })  # fmt: skip


def row_to_config(row: Sequence[Any]) -> TaskTypeConfig:
    return TaskTypeConfig(
        task_type=row[0],
        schedule_limit=int(row[1]),
        schedule_interval=int(row[2]),
        max_processing_time=int(row[3]),
        max_retry_num=int(row[4]),
        retry=decode_retry(int(row[5]), int(row[6])),
        begin_pos=int(row[7]),
        end_pos=int(row[8]),
        data_begin_pos=int(row[9]),
        create_time=int(row[10]),
        modify_time=int(row[11]),
        paused=bool(row[12]),
    )


def config_params(config: TaskTypeConfig, now: int) -> tuple[Any, ...]:
    """Parameters of the config upsert, in CONFIG_UPSERT column order."""
    retry_interval, max_retry_interval = encode_retry(config.retry)
    return (
        config.task_type,
        config.schedule_limit,
        config.schedule_interval,
        config.max_processing_time,
        config.max_retry_num,
        retry_interval,
        max_retry_interval,
        now,
        now,
    )


def filter_sql(where: TaskFilter, mark: str) -> tuple[str, list[Any]]:
    """The AND-clauses of a task listing and their parameters, `mark` the placeholder.

    Only fixed column names enter the SQL text; every value is bound. Text is
    also compared by length: MariaDB's PAD SPACE collations would otherwise
    match "bob" for "bob ".
    """
    clauses: list[str] = []
    params: list[Any] = []
    if where.status is not None:
        clauses.append(f" AND status = {mark}")
        params.append(int(where.status))
    if where.status_in:
        statuses = sorted(int(s) for s in where.status_in)
        clauses.append(f" AND status IN ({', '.join([mark] * len(statuses))})")
        params += statuses
    for column, text in (("task_stage", where.task_stage), ("user_id", where.user_id)):
        if text is not None:
            clauses.append(f" AND {column} = {mark} AND LENGTH({column}) = LENGTH({mark})")
            params += [text, text]
    return "".join(clauses), params


WIRE_TEXT_COLUMNS = ("task_id", "task_type", "user_id", "task_stage", "task_context",
                     "schedule_log")  # fmt: skip
WIRE_TASK_OVERHEAD = 256
"""Bytes a task takes in a reply beyond its text columns: field tags, length
prefixes, integers at their widest varint and the lease (token up to 64
characters), with room to spare (tests/unit/test_wire_size.py checks it)."""


def wire_size_sql(byte_length: str) -> str:
    """SQL of a row's estimated encoded size, `byte_length` the dialect's function
    giving a text's UTF-8 length in bytes ("{}" stands for the column)."""
    texts = " + ".join(byte_length.format(column) for column in WIRE_TEXT_COLUMNS)
    return f"{texts} + {WIRE_TASK_OVERHEAD}"


def wire_size(task: Task) -> int:
    """What wire_size_sql computes on the task's row."""
    texts = (task.task_id, task.task_type, task.user_id, task.task_stage, task.context,
             task.schedule_log)  # fmt: skip
    return sum(len(text.encode()) for text in texts) + WIRE_TASK_OVERHEAD


def oldest_first(
    candidates: Iterable[tuple[int, int, int, int]], wants: list[tuple[int, int]]
) -> list[dict[int, list[int]]]:
    """Deal the oldest (order_time, pos, row_id, wire size) candidates out to
    holds in turn, each (limit, max_bytes) getting up to `limit` of the oldest
    left, grouped by pos; with `max_bytes`, only as many as fit in it together
    (the first always: a task larger than the budget goes alone).

    Holds collect due candidates from every live table and keep the globally
    oldest, so an old table can never block newer ones (no head-of-line block).
    """
    ordered = heapq.nsmallest(sum(limit for limit, _ in wants), candidates)
    shares: list[dict[int, list[int]]] = []
    at = 0
    for limit, max_bytes in wants:
        chosen: dict[int, list[int]] = {}
        total = taken = 0
        while at < len(ordered) and taken < limit:
            _, pos, row_id, size = ordered[at]
            if max_bytes and taken and total + size > max_bytes:
                break
            total += size
            taken += 1
            at += 1
            chosen.setdefault(pos, []).append(row_id)
        shares.append(chosen)
    return shares


class ClaimOne:
    """task_claim_due as one hold of task_claim_due_many."""

    async def task_claim_due_many(
        self, config: TaskTypeConfig, claims: list[tuple[int, Claim]]
    ) -> list[list[Task]]:
        raise NotImplementedError

    async def task_claim_due(self, config: TaskTypeConfig, limit: int, claim: Claim) -> list[Task]:
        (held,) = await self.task_claim_due_many(config, [(limit, claim)])
        return held


def claimed(task: Task, claim: Claim) -> Task:
    """`task` as a claim leaves it (for backends without UPDATE ... RETURNING)."""
    return task_with(
        task,
        status=TaskStatus.PROCESSING,
        lease_token=claim.token,
        hold_count=task.hold_count + 1,
        lease_deadline=claim.deadline,
        version=task.version + 1,
        modify_time=claim.now,
    )


def changed(task: Task, change: TaskChange, now: int) -> Task:
    """`task` after a leased update applied `change` (see claimed)."""
    return task_with(
        task,
        status=change.status,
        task_stage=change.task_stage,
        context=change.context,
        crt_retry_num=change.crt_retry_num,
        order_time=change.order_time,
        schedule_log=change.schedule_log,
        lease_token="",
        lease_deadline=0,
        version=task.version + 1,
        modify_time=now,
    )


@dataclass(frozen=True)
class InsertTarget:
    """Where and with which retry settings a new task is inserted (read from its type)."""

    pos: int
    max_retry_num: int
    retry_interval: int
    max_retry_interval: int
    max_processing_time: int
    paused: bool

    def leased(self, task: TaskInsert, now: int) -> bool:
        """Whether a handed-off task goes in PROCESSING (see TaskInsert.lease_token)."""
        return bool(task.lease_token) and not self.paused and task.order_time <= now

    @cached_property
    def retry(self) -> RetryPolicy:
        """Decoded once per target, not once per inserted row."""
        return decode_retry(self.retry_interval, self.max_retry_interval)

    def params(self, task: TaskInsert, task_id: str, now: int) -> tuple[Any, ...]:
        """Parameters of a backend's TASK_INSERT, in its column order."""
        leased = self.leased(task, now)
        return (
            task_id,
            task.task_type,
            task.user_id,
            task.task_stage,
            int(TaskStatus.PROCESSING if leased else TaskStatus.PENDING),
            task.priority,
            self.max_retry_num,
            self.retry_interval,
            self.max_retry_interval,
            task.context,
            task.order_time,
            task.lease_token if leased else "",
            int(leased),
            now + self.max_processing_time if leased else 0,
            now,
            now,
        )


def insert_target(task_type: str, row: Sequence[Any] | None) -> InsertTarget:
    """The type's INSERT_TARGET row, or TaskTypeNotFound if it is not registered."""
    if row is None:
        raise TaskTypeNotFound(f"task type {task_type!r} is not registered", field="task_type")
    pos, max_retry_num, retry_interval, max_retry_interval, max_processing_time, paused = row
    return InsertTarget(pos, max_retry_num, retry_interval, max_retry_interval,
                        max_processing_time, bool(paused))  # fmt: skip


def inserted(task: TaskInsert, task_id: str, target: InsertTarget, row_id: int, now: int) -> Task:
    """The row a task insert wrote (see claimed)."""
    leased = target.leased(task, now)
    return task_from_fields({
        "row_id": row_id,
        "task_id": task_id,
        "task_type": task.task_type,
        "pos": target.pos,
        "user_id": task.user_id,
        "task_stage": task.task_stage,
        "status": TaskStatus.PROCESSING if leased else TaskStatus.PENDING,
        "priority": task.priority,
        "crt_retry_num": 0,
        "max_retry_num": target.max_retry_num,
        "retry": target.retry,
        "context": task.context,
        "schedule_log": "",
        "order_time": task.order_time,
        "lease_token": task.lease_token if leased else "",
        "hold_count": int(leased),
        "lease_deadline": now + target.max_processing_time if leased else 0,
        "version": 1,
        "create_time": now,
        "modify_time": now,
    })  # fmt: skip


def _set_params(change: TaskChange, now: int) -> tuple[Any, ...]:
    """The SET values of UPDATE_LEASED and UPDATE_FENCED, in their order."""
    return (
        int(change.status),
        change.task_stage,
        change.context,
        change.crt_retry_num,
        change.order_time,
        change.schedule_log,
        now,
    )


def leased_update_params(task: Task, lease_token: str, change: TaskChange, now: int
                         ) -> tuple[Any, ...]:  # fmt: skip
    """Parameters of a backend's UPDATE_LEASED, in its order."""
    return (*_set_params(change, now), task.row_id, lease_token, task.version)


def fenced_update_params(task: Task, change: TaskChange, now: int) -> tuple[Any, ...]:
    """Parameters of a backend's UPDATE_FENCED, in its order."""
    return (*_set_params(change, now), task.row_id, task.version)


def lowest_requeued(updates: list[tuple[Task, TaskChange]], applied: list[Task | None]
                    ) -> dict[str, int]:  # fmt: skip
    """The lowest table position of each type where an applied change made a task PENDING."""
    lowest: dict[str, int] = {}
    for (task, change), done in zip(updates, applied, strict=True):
        if done is not None and change.status is TaskStatus.PENDING:
            lowest[task.task_type] = min(task.pos, lowest.get(task.task_type, task.pos))
    return lowest


def by_table(keys: list[tuple[str, int, str]]) -> dict[tuple[str, int], list[str]]:
    """Task ids grouped by the (task_type, pos) table they live in."""
    tables: dict[tuple[str, int], list[str]] = {}
    for task_type, pos, task_id in keys:
        tables.setdefault((task_type, pos), []).append(task_id)
    return tables
