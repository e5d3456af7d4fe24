"""The ports of the core: what the rules need from the world, as Protocols.

The core calls these; adapters implement them (asyncflow.store.sqlite and
asyncflow.store.mysql the store, asyncflow.cache.* the cache, asyncflow.clock the
clock, asyncflow.server.wakeup the due listener, asyncflow.http.metrics the
metrics) and import this module, never
the other way round. asyncflow.server.app wires one of each into the core.
"""

from __future__ import annotations

from typing import Literal, Protocol

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


class Clock(Protocol):
    def now(self) -> int:
        """Current time as Unix seconds (UTC)."""
        ...


class DueListener(Protocol):
    """Told when tasks of a type become due (now or at `when`), so that
    streaming dispatch can push them at once instead of waiting for a poll."""

    def tasks_due(self, task_type: str, when: int, count: int) -> None: ...


class Taker(Protocol):
    """One free slot of a waiting stream, reserved for one new task."""

    @property
    def lease_token(self) -> str:
        """The lease the task is inserted under if it goes to this slot."""
        ...

    def take(self, task: Task) -> None:
        """The task was committed PROCESSING under lease_token: push it now."""
        ...

    def cancel(self) -> None:
        """The task did not come (paused type, a used idempotency key, an error)."""
        ...


class HandOff(Protocol):
    """Sync match: streams of this replica that wait for tasks of a type, so that
    a create can commit a task already leased to one and push it after the
    commit, with no claim transaction and no wake-up in between."""

    def offer(self, task_type: str, count: int) -> list[Taker]:
        """Up to `count` reserved slots (none: no stream waits with room)."""
        ...


class CancelListener(Protocol):
    """Told when an operator cancels tasks that were held, so that the stream
    holding each one can tell its worker to stop the stage at once."""

    def tasks_cancelled(self, held: list[tuple[str, str]], reason: str) -> None:
        """`held`: (task_id, lease_token) of each task as it was held."""
        ...


TaskEvent = Literal["created", "held", "pushed", "reported", "recovered"]


class Metrics(Protocol):
    """What the core, dispatch and governance tell the operators' metrics, at the
    place where it happens. Cheap, never raises; NoMetrics by default. The
    outcomes of each event are listed in asyncflow.http.metrics."""

    def tasks(self, event: TaskEvent, task_type: str, outcome: str, count: int) -> None:
        """`count` tasks of the registered `task_type` went through `event`;
        `outcome` says how ("" for an event that has none)."""
        ...

    def cache_lookup(self, hit: bool) -> None: ...

    def governance_pass(self, loop: str, seconds: float, failed: bool) -> None:
        """One pass of a governance loop ran for `seconds` (and raised, if `failed`)."""
        ...


class NoMetrics:
    """Metrics off (no HTTP side, tools, unit tests)."""

    def tasks(self, event: TaskEvent, task_type: str, outcome: str, count: int) -> None:
        return None

    def cache_lookup(self, hit: bool) -> None:
        return None

    def governance_pass(self, loop: str, seconds: float, failed: bool) -> None:
        return None


class TaskCache(Protocol):
    """Task read cache with read-your-writes.

    Every task row carries a `version` bumped by each write. Writers put the row
    they wrote; readers that missed fill in the row they read. An entry is only
    ever replaced by a higher version, so a slow reader can never put back a
    state older than one a writer already published (the original's cache-aside
    race, reference §12.18). The cache is an accelerator only: any failure reads
    as a miss, and a write whose cache update fails still never leaves the older
    state readable (see asyncflow/cache/redis.py and docs/semantics.md).
    """

    def generation(self) -> int:
        """Taken before the store call whose rows are then put or filled in: rows
        read or written before a change of generation are not served."""
        ...

    async def get(self, task_id: str) -> Task | None: ...

    async def put(self, tasks: list[Task], generation: int) -> None:
        """Publish rows the caller wrote over an older state. Returns once no read
        that starts afterwards can be served a version older than these."""
        ...

    async def fill(self, tasks: list[Task], generation: int) -> None:
        """Best effort: cache rows read from the store after a miss, or just
        created (no older state to hide, so a failure is not retried)."""
        ...

    async def close(self) -> None: ...


class TaskStore(Protocol):
    """The storage interface: one method per operation, domain values in and out.

    Every method that depends on time takes `now` from the caller's clock; SQL
    never calls NOW(). Driver errors never leave a store: a database that cannot
    be reached, is locked or fails to read or write raises
    asyncflow.errors.Unavailable. tests/store/ runs one contract suite against
    every backend.
    """

    async def migrate(self) -> list[str]:
        """Apply pending numbered migrations; return the names applied."""
        ...

    async def close(self) -> None: ...

    async def schema_ready(self) -> bool:
        """One cheap query: True when the database answers and every migration
        this code knows is applied (/readyz). Unavailable when it cannot answer."""
        ...

    def pool_usage(self) -> PoolUsage:
        """The store's connections now, without touching the database."""
        ...

    async def type_upsert(self, config: TaskTypeConfig, now: int) -> TaskTypeConfig:
        """Create or update the config row; create the position row (1, 1) and
        table 1 if missing (never moving existing positions). Idempotent."""
        ...

    async def type_get(self, task_type: str) -> TaskTypeConfig | None: ...

    async def type_list(self) -> list[TaskTypeConfig]: ...

    async def type_set_paused(
        self, task_type: str, paused: bool, now: int
    ) -> TaskTypeConfig | None:
        """Set the type's paused flag (a single-column update); None if not registered."""
        ...

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

    async def task_insert_many(self, tasks: list[TaskInsert], now: int) -> list[Task | str]:
        """Insert pending tasks into their types' end tables (see TaskInsert), in
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

    async def task_claim_due_many(
        self, config: TaskTypeConfig, claims: list[tuple[int, Claim]]
    ) -> list[list[Task]]:
        """Several holds of the type in one transaction, as task_claim_due would
        make them one after the other: each (limit, claim) in turn takes the
        oldest due tasks left, up to its limit and its byte budget."""
        ...

    async def task_get_many(self, keys: list[tuple[str, int, str]]) -> dict[str, Task]:
        """Tasks by (task_type, pos, task_id), one query per table; missing ones absent."""
        ...

    async def task_update_leased_many(
        self, updates: list[tuple[Task, str, TaskChange]], now: int
    ) -> list[Task | None]:
        """For each (task, lease_token, change), in one transaction: apply the
        change if the task is still PROCESSING under that token at task.version,
        clearing the lease. None for each one where that no longer holds (a
        concurrent writer got there first and keeps its write)."""
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

    async def task_list_expired(self, config: TaskTypeConfig, now: int, limit: int) -> list[Task]:
        """PROCESSING tasks whose lease deadline is before `now`, at most `limit`
        per table of begin_pos..end_pos, earliest deadline first. A plain read:
        the caller decides what becomes of each and writes it back with
        task_update_leased_many, which skips any task written in between."""
        ...

    async def task_update_fenced_many(
        self, updates: list[tuple[Task, TaskChange]], now: int
    ) -> list[Task | None]:
        """An operator's changes (cancel, retry), in one transaction: apply each
        change if the task is still at task.version, whatever its status, clearing
        any lease. None for each one where the task moved meanwhile (its writer
        keeps its write). A change that makes a task PENDING in a table below its
        type's begin_pos moves begin_pos back to that table, serialised with
        begin_pos advances, so that holds see the task again."""
        ...

    async def schedule_insert(self, schedule: Schedule, now: int) -> Schedule:
        """Store a new schedule (version 1, created now); ScheduleAlreadyExists if
        the name is taken."""
        ...

    async def schedule_get(self, name: str) -> Schedule | None: ...

    async def schedule_list(self) -> list[Schedule]:
        """Every schedule, by name."""
        ...

    async def schedule_list_due(self, now: int, limit: int) -> list[Schedule]:
        """Schedules not paused whose next_fire_time <= now, earliest first, at most `limit`."""
        ...

    async def schedule_update(self, schedule: Schedule, now: int) -> Schedule | None:
        """Write every field of `schedule` if its row is still at schedule.version;
        the row as written (version + 1), or None if it moved or is gone."""
        ...

    async def schedule_delete(self, name: str) -> bool:
        """False if there was no such schedule."""
        ...
