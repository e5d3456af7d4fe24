"""The governance actions (reference §7), done right: one pass of each loop.

Every position change is a conditional single-column update in the store, so
even two replicas running the same pass cannot double-split, double-advance or
lose an update; the per-loop locks (asyncflow.lock) only keep them from
wasting work. Each action logs what it did, with structured fields.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asyncflow.core.ids import task_table
from asyncflow.core.model import Task, TaskStatus, TaskTypeConfig
from asyncflow.core.ports import Clock, TaskStore

log = logging.getLogger(__name__)

DAY = 86_400
KEY_PRUNE_BATCH = 10_000


@dataclass(frozen=True)
class GovernanceSettings:
    """Config section [governance]; intervals in seconds, defaults from the original."""

    enabled: bool = True
    long_process_interval: float = 10.0
    """Stuck-task recovery period."""
    split_interval: float = 30.0
    """Table split check period."""
    move_interval: float = 10.0
    """begin_pos advance period."""
    retention_interval: float = 3600.0
    """Retention pass period (when retention_days > 0)."""
    table_max_rows: int = 5_000_000
    """Split the newest table once this many tasks went into it."""
    recover_batch: int = 1000
    """Most stuck tasks recovered per table per pass."""
    retention_days: int = 0
    """Drop retired tables whose newest task is older than this; 0 keeps all."""
    lock_backend: str = "auto"
    """"redis" (replicas share locks), "local" (one process), "auto": redis
    when the cache is Redis, else local."""
    lock_ttl_seconds: float = 30.0
    """A dead replica's lock frees itself within this; renewed every third."""


Recover = Callable[[TaskTypeConfig, int], Awaitable[list[Task]]]
"""Recovers one type's stuck tasks (at most the int per table): TaskCore.recover_stuck,
which applies the retry policy and publishes the rows it wrote."""


class Governance:
    def __init__(
        self, store: TaskStore, clock: Clock, recover: Recover, settings: GovernanceSettings
    ) -> None:
        self.store = store
        self.clock = clock
        self.recover = recover
        self.settings = settings

    async def recover_stuck(self) -> int:
        """Expired leases back to PENDING with a retry counted, or to FAILED."""
        total = 0
        for config in await self.store.type_list():
            tasks = await self.recover(config, self.settings.recover_batch)
            if tasks:
                failed = sum(t.status is TaskStatus.FAILED for t in tasks)
                total += len(tasks)
                log.info(
                    "recovered %d stuck %s tasks (%d failed: retries exhausted)",
                    len(tasks), config.task_type, failed,
                    extra={"action": "recover_stuck", "task_type": config.task_type,
                           "tasks": len(tasks), "failed": failed},
                )  # fmt: skip
        return total

    async def split_tables(self) -> int:
        """Open the next table for types whose newest table is full."""
        splits = 0
        for config in await self.store.type_list():
            rows = await self.store.task_table_rows(config.task_type, config.end_pos)
            if rows < self.settings.table_max_rows:
                continue
            if await self.store.pos_split(config, self.clock.now()):
                splits += 1
                log.info(
                    "split %s: new table %s after %d rows in %s",
                    config.task_type, task_table(config.task_type, config.end_pos + 1), rows,
                    task_table(config.task_type, config.end_pos),
                    extra={"action": "split", "task_type": config.task_type,
                           "table": task_table(config.task_type, config.end_pos + 1),
                           "end_pos": config.end_pos + 1, "rows": rows},
                )  # fmt: skip
        return splits

    async def advance_begin(self) -> int:
        """Move begin_pos past tables whose tasks are all terminal."""
        moves = 0
        for config in await self.store.type_list():
            current: TaskTypeConfig | None = config
            while current is not None and current.begin_pos < current.end_pos:
                if not await self.store.pos_advance_begin(current, self.clock.now()):
                    break
                moves += 1
                log.info(
                    "advanced %s: begin_pos %d -> %d (table %s finished)",
                    current.task_type, current.begin_pos, current.begin_pos + 1,
                    task_table(current.task_type, current.begin_pos),
                    extra={"action": "advance_begin", "task_type": current.task_type,
                           "table": task_table(current.task_type, current.begin_pos),
                           "begin_pos": current.begin_pos + 1},
                )  # fmt: skip
                current = await self.store.type_get(current.task_type)
        return moves

    async def drop_retired(self) -> int:
        """Retention: drop old tables wholly before begin_pos, and old idempotency keys."""
        if self.settings.retention_days <= 0:
            return 0
        cutoff = self.clock.now() - self.settings.retention_days * DAY
        dropped_total = 0
        for config in await self.store.type_list():
            for pos in await self.store.tables_drop_retired(config, cutoff):
                dropped_total += 1
                log.info(
                    "retention dropped table %s (older than %d days, before begin_pos %d)",
                    task_table(config.task_type, pos), self.settings.retention_days,
                    config.begin_pos,
                    extra={"action": "drop_table", "task_type": config.task_type,
                           "table": task_table(config.task_type, pos)},
                )  # fmt: skip
            keys = await self.store.keys_prune(config.task_type, cutoff, KEY_PRUNE_BATCH)
            if keys:
                log.info(
                    "retention forgot %d idempotency keys of %s", keys, config.task_type,
                    extra={"action": "prune_keys", "task_type": config.task_type, "keys": keys},
                )  # fmt: skip
        return dropped_total
