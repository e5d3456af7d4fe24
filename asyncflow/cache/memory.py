"""In-process task cache for the embedded single-process default."""

from __future__ import annotations

from collections import OrderedDict

from asyncflow.core.model import Task


class MemoryTaskCache:
    """A bounded LRU of tasks with the same newer-version-wins rule as Redis.

    The generation counts evictions: an evicted entry may have been newer than
    the row a slow reader fills in, so a fill whose entry is absent is refused
    when anything was evicted since the reader's ticket.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: OrderedDict[str, Task] = OrderedDict()
        self._max_entries = max_entries
        self._evictions = 0

    def generation(self) -> int:
        return self._evictions

    async def get(self, task_id: str) -> Task | None:
        task = self._entries.get(task_id)
        if task is not None:
            self._entries.move_to_end(task_id)
        return task

    async def put(self, tasks: list[Task], generation: int = 0) -> None:
        for task in tasks:
            current = self._entries.get(task.task_id)
            if current is None or current.version < task.version:
                self._entries[task.task_id] = task
                self._entries.move_to_end(task.task_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
            self._evictions += 1

    async def fill(self, tasks: list[Task], generation: int = 0) -> None:
        if generation != self._evictions:
            tasks = [task for task in tasks if task.task_id in self._entries]
        await self.put(tasks)

    async def close(self) -> None:
        self._entries.clear()
        self._evictions += 1


class NoTaskCache:
    """Cache disabled: every read goes to the store."""

    def generation(self) -> int:
        return 0

    async def get(self, task_id: str) -> Task | None:
        return None

    async def put(self, tasks: list[Task], generation: int = 0) -> None:
        return None

    async def fill(self, tasks: list[Task], generation: int = 0) -> None:
        return None

    async def close(self) -> None:
        return None
