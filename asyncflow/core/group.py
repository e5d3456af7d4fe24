"""Group commit: concurrent callers share one flush (one transaction, one cache write).

A caller submits its items and waits for their results. When no flush is in
flight, one starts at once (no timer adds latency); while one is in flight,
later submissions gather and go together in the next, bounded by `max_items`.
One flush at a time: the batch grows with the load instead of the number of
concurrent transactions.

The flush returns one result per item, so an item the flush refuses (a stale
lease) fails only its own caller; an exception from the flush (the database
cannot serve) reaches every caller of that batch. The flush runs in its own
task: a caller that is cancelled stops waiting but does not cancel the flush,
whose other callers still get their results.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 (an item)
R = TypeVar("R")

Flush = Callable[[list[I]], Awaitable[list[R]]]


class GroupCommit(Generic[I, R]):
    def __init__(self, flush: Flush[I, R], max_items: int) -> None:
        self._flush = flush
        self._max_items = max_items
        self._queue: deque[tuple[list[I], asyncio.Future[list[R]]]] = deque()
        self._flushing: asyncio.Task[None] | None = None

    async def submit(self, items: list[I]) -> list[R]:
        """The flush's results for `items`, in order (a list longer than max_items
        goes alone in one flush)."""
        if not items:
            return []
        done: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._queue.append((items, done))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._run())
        return await done

    async def _run(self) -> None:
        try:
            while self._queue:
                batch = [self._queue.popleft()]
                size = len(batch[0][0])
                while self._queue and size + len(self._queue[0][0]) <= self._max_items:
                    batch.append(self._queue.popleft())
                    size += len(batch[-1][0])
                await self._flush_one(batch)
        finally:
            # No await between the empty queue and this: a submit that comes
            # later sees no flush in flight and starts one.
            self._flushing = None
            while self._queue:  # only if cancelled (the loop is shutting down)
                _, done = self._queue.popleft()
                if not done.done():
                    done.cancel()

    async def _flush_one(self, batch: list[tuple[list[I], asyncio.Future[list[R]]]]) -> None:
        try:
            results = await self._flush([item for items, _ in batch for item in items])
        except BaseException as failure:
            for _, done in batch:
                if not done.done():
                    if isinstance(failure, Exception):
                        done.set_exception(failure)
                    else:
                        done.cancel()
            if not isinstance(failure, Exception):
                raise
            return
        first = 0
        for items, done in batch:
            if not done.done():  # its caller may have been cancelled
                done.set_result(results[first : first + len(items)])
            first += len(items)
