"""Task read cache with read-your-writes.

Every task row carries a `version` bumped by each write. Writers put the row they
wrote; readers that missed put the row they read. An entry is only ever replaced
by a higher version, so a slow reader can never put back a state older than one
a writer already published (the original's cache-aside race, reference §12.18).
The cache is an accelerator only: any failure reads as a miss.
"""

from __future__ import annotations

from typing import Protocol

from asyncflow.core.model import Task


class TaskCache(Protocol):
    async def get(self, task_id: str) -> Task | None: ...

    async def put(self, tasks: list[Task]) -> None:
        """Store each task unless the cache already holds the same or a newer version."""
        ...

    async def close(self) -> None: ...
