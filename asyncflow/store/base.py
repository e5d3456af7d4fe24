"""The storage interface: one method per operation, domain values in and out.

Every method that depends on time takes `now` from the caller's clock; SQL never
calls NOW(). Backends: asyncflow.store.mysql (production) and
asyncflow.store.sqlite (embedded default). tests/store/ runs one contract suite
against both.
"""

from __future__ import annotations

from typing import Protocol

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


class TaskStore(Protocol):
    async def migrate(self) -> list[str]:
        """Apply pending numbered migrations; return the names applied."""
        ...

    async def close(self) -> None: ...

    async def type_upsert(self, config: TaskTypeConfig, now: int) -> TaskTypeConfig:
        """Create or update the config row; create the position row (1, 1) and
        table 1 if missing (never moving existing positions). Idempotent."""
        ...

    async def type_get(self, task_type: str) -> TaskTypeConfig | None: ...

    async def type_list(self) -> list[TaskTypeConfig]: ...

    async def pos_split(self, config: TaskTypeConfig, now: int) -> bool:
        """Create table end_pos + 1 and move end_pos onto it, if end_pos is still
        config.end_pos (a conditional single-column update). False if it moved."""
        ...

    async def pos_advance_begin(self, config: TaskTypeConfig, now: int) -> bool:
        """Move begin_pos one table on if begin_pos < end_pos and every task of
        the begin table is terminal; checked and moved under an exclusive lock
        on the position row (creates hold it shared). False if nothing moved."""
        ...

    async def task_table_rows(self, task_type: str, pos: int) -> int:
        """Rows ever inserted into a task table (its highest id): a primary-key
        lookup, never a scan. 0 for a missing table."""
        ...

    async def tables_drop_retired(self, config: TaskTypeConfig, created_before: int) -> list[int]:
        """Drop tables below begin_pos whose newest task was created before
        `created_before`, oldest first, raising data_begin_pos past each.
        Returns the dropped positions."""
        ...

    async def keys_prune(self, task_type: str, created_before: int, limit: int) -> int:
        """Forget idempotency keys older than `created_before` (at most `limit`)."""
        ...

    async def task_insert_many(self, tasks: list[NewTask], now: int) -> list[Task | str]:
        """Insert pending tasks into their types' end tables (see NewTask), in
        order, in one transaction. Each result is the inserted task, or the id of
        the existing task its idempotency key names. Raises TaskTypeNotFound
        (inserting nothing) when a type is not registered."""
        ...

    async def task_get(self, task_type: str, pos: int, task_id: str) -> Task | None: ...

    async def task_claim_due(self, config: TaskTypeConfig, limit: int, claim: Claim) -> list[Task]:
        """Atomically lease up to `limit` pending tasks with order_time <= now,
        oldest first across tables begin_pos..end_pos. A task is never returned
        to two concurrent callers."""
        ...

    async def task_get_many(self, keys: list[tuple[str, int, str]]) -> dict[str, Task]:
        """Tasks by (task_type, pos, task_id), one query per table; missing ones absent."""
        ...

    async def task_update_leased_many(
        self, updates: list[tuple[Task, str, TaskChange]], now: int
    ) -> list[Task | None]:
        """For each (task, lease_token, change), in one transaction: apply the
        change if the task is still PROCESSING under that token at task.version,
        clearing the lease. None for each one where that no longer holds."""
        ...

    async def task_extend_lease(
        self, task: Task, lease_token: str, deadline: int, now: int
    ) -> Task | None:
        """Move the lease deadline if the task is still PROCESSING under
        `lease_token` at task.version. None when that no longer holds."""
        ...

    async def task_list(
        self, config: TaskTypeConfig, where: TaskFilter, after: PageCursor | None, limit: int
    ) -> list[Task]:
        """Tasks in (pos, row_id) order, strictly after `after`."""
        ...

    async def task_count(self, config: TaskTypeConfig) -> dict[TaskStatus, int]:
        """Tasks by status over every table of the type."""
        ...

    async def task_recover_stuck(self, config: TaskTypeConfig, now: int, limit: int) -> list[Task]:
        """Return PROCESSING tasks whose lease deadline has passed to PENDING with
        one retry counted and order_time set by their back-off, or to FAILED when
        their retries are exhausted. Bounded to `limit` tasks per table; returns
        the recovered rows as they now are."""
        ...
