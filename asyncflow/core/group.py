"""Group commit: concurrent callers share one flush (one transaction, one cache
round trip, one wake-up per type) instead of paying one each.

A caller submits its items and waits for their results. With no flush in
flight, one starts at once: it first lets calls the server has already received
reach it (a few turns of the event loop while more keep arriving; no timer adds
latency); while a flush is in flight, later submissions gather for the next
one. One flush is in flight at a time (a second beside it only made batches
smaller: measured, docs/benchmarks.md), and a flush takes at most `max_items`
items; one submission's items always go together (a submission longer than
`max_items` goes alone).

- The flush returns one result per item. A result may be an exception (a
  duplicate, a stale lease, a type not registered): it is handed back as a
  value to that item's caller only, who decides whether to raise it.
- A flush that raises fails every caller of that batch (the flush must then
  have written nothing: one transaction).
- A caller that is cancelled harms no one: the flush runs in its own task. If
  the caller was cancelled before its batch was taken, its items are dropped
  (never written); after, they are written with the batch and the results
  discarded, like the reply of any call whose client went away.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from asyncflow.errors import Unavailable

Item = TypeVar("Item")
Result = TypeVar("Result")

QUIET_TURNS = 2
"""A flush stops gathering once this many turns of the event loop in a row
brought no submission (a call takes a few turns from its arrival to its
submit). Measured on GetTask cache hits: batches of ~2 without waiting, ~5
with; server CPU per call 0.59-0.65 -> 0.45 ms (docs/benchmarks.md)."""
GATHER_TURNS = 4
"""A flush gathers for at most this many times its quiet turns (8 turns by default)."""

Flush = Callable[[list[Item]], Awaitable[Sequence[Result]]]


class GroupCommit(Generic[Item, Result]):
    def __init__(self, flush: Flush[Item, Result], max_items: int, *, patience: int = 0) -> None:
        """`patience` (0: QUIET_TURNS always): the most quiet turns a flush waits
        for, after the load: 1 + twice the mean size of the recent batches, so
        that a lone caller waits 3 turns and many callers wait longer for the
        calls still on their way. A mean, not the last batch: under load, one
        small batch would otherwise shorten the next wait, and the batches never
        grew (measured). For flushes that cost more than a caller's own work
        (a cache round trip), where batches stay small otherwise."""
        self._flush = flush
        self._max_items = max_items
        self._patience = patience
        self._mean_items = 0.0
        """Items per batch, smoothed over the last ~8 batches."""
        self._queue: deque[tuple[list[Item], asyncio.Future[list[Result]]]] = deque()
        self._flushing: set[asyncio.Task[None]] = set()

    async def submit(self, items: list[Item]) -> list[Result]:
        """The flush's results for `items`, in order."""
        if not items:
            return []
        done: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._queue.append((items, done))
        if not self._flushing:
            # Held here until it ends (the loop keeps only weak references).
            self._flushing.add(asyncio.create_task(self._drain(), name="asyncflow-group-commit"))
        return await done

    async def submit_one(self, item: Item) -> Result:
        (result,) = await self.submit([item])
        return result

    async def _gather(self) -> None:
        """Let calls the server has already received join the batch: yield to the
        event loop until `need` turns in a row brought nothing, at most
        GATHER_TURNS * need turns. Not a timer: on an idle server this costs two
        or three turns of the loop (microseconds)."""
        need = QUIET_TURNS
        if self._patience:
            need = max(need, min(self._patience, int(2 * self._mean_items) + 1))
        quiet = 0
        for _ in range(GATHER_TURNS * need):
            size = len(self._queue)
            if size >= self._max_items:
                return
            await asyncio.sleep(0)
            quiet = 0 if len(self._queue) > size else quiet + 1
            if quiet == need:
                return

    def _take(self) -> list[tuple[list[Item], asyncio.Future[list[Result]]]]:
        batch: list[tuple[list[Item], asyncio.Future[list[Result]]]] = []
        size = 0
        while self._queue:
            items, done = self._queue[0]
            if batch and size + len(items) > self._max_items:
                break
            self._queue.popleft()
            if not done.done():  # its caller was cancelled: never written
                batch.append((items, done))
                size += len(items)
        return batch

    async def _drain(self) -> None:
        batch: list[tuple[list[Item], asyncio.Future[list[Result]]]] = []
        try:
            # No await between the last look at the queue and leaving _flushing
            # (finally): a submit cannot slip in unseen.
            while self._queue:
                await self._gather()
                batch = self._take()
                taken = sum(len(items) for items, _ in batch)
                self._mean_items += (taken - self._mean_items) / 8
                if batch:
                    await self._flush_one(batch)
                batch = []
        except BaseException:  # cancelled (the loop shutting down): nobody left waiting
            for _, done in [*batch, *self._queue]:
                if not done.done():
                    done.set_exception(Unavailable("the server is shutting down"))
            self._queue.clear()
            raise
        finally:
            self._flushing.discard(asyncio.current_task())

    async def _flush_one(
        self, batch: list[tuple[list[Item], asyncio.Future[list[Result]]]]
    ) -> None:
        try:
            results = await self._flush([item for items, _ in batch for item in items])
        except Exception as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        first = 0
        for items, done in batch:
            if not done.done():  # its caller may have been cancelled meanwhile
                done.set_result(list(results[first : first + len(items)]))
            first += len(items)
