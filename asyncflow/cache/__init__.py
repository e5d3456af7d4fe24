"""Task read cache with read-your-writes.

Every task row carries a `version` bumped by each write. Writers put the row they
wrote; readers that missed fill in the row they read. An entry is only ever
replaced by a higher version, so a slow reader can never put back a state older
than one a writer already published (the original's cache-aside race, reference
§12.18). The cache is an accelerator only: any failure reads as a miss, and a
write whose cache update fails still never leaves the older state readable
(see asyncflow/cache/redis.py and docs/semantics.md).
"""

from __future__ import annotations

from typing import Protocol

from asyncflow.core.model import Task


class TaskCache(Protocol):
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
