"""Group commit: concurrent callers share one flush (one transaction, one cache
write, one wake-up per type) instead of paying one each.

A caller submits an item and awaits its result. With no flush in flight the
flush starts at once: it only lets the calls the server has already received
reach it first (a few turns of the event loop while more keep arriving; no
timer adds latency); while a flush is in flight, new items gather for the
next one. One flush is in flight at a time per
batcher, and a flush takes at most `max_items` items.

- The flush returns one result per item; an exception among them fails only
  that item's caller (a duplicate, a type not registered).
- A flush that raises fails every caller of that batch (the flush must then
  have written nothing: one transaction).
- A caller that is cancelled harms no one: the flush runs in its own task. If
  the caller was cancelled before its batch was taken, its item is dropped
  (never written); after, its item is written with the batch and the result is
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

GATHER_TURNS = 8
"""Turns of the event loop a flush waits at most for calls already under way
(a call takes a few turns from its arrival to its submit). Measured on GetTask
cache hits: batches of ~2 without waiting, ~5 with; server CPU per call
0.59-0.65 -> 0.45 ms (docs/benchmarks.md)."""

Flush = Callable[[list[Item]], Awaitable[Sequence[Result | Exception]]]


class Batcher(Generic[Item, Result]):
    def __init__(self, flush: Flush[Item, Result], max_items: int) -> None:
        self._flush = flush
        self._max_items = max_items
        self._queue: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._flushing: asyncio.Task[None] | None = None
        """The one flush in flight (a second beside it only made batches smaller:
        measured, docs/benchmarks.md)."""

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flushing is None:
            # Held here until it ends (the loop keeps only weak references).
            self._flushing = asyncio.create_task(self._drain(), name="asyncflow-batch")
        return await future

    async def _gather(self) -> None:
        """Let calls the server has already received join the batch: yield to the
        event loop while the queue keeps growing, at most GATHER_TURNS turns. Not
        a timer: on an idle server this costs two turns of the loop (microseconds)."""
        quiet = 0
        for _ in range(GATHER_TURNS):
            size = len(self._queue)
            if size >= self._max_items:
                return
            await asyncio.sleep(0)
            quiet = 0 if len(self._queue) > size else quiet + 1
            if quiet == 2:
                return

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        while self._queue and len(batch) < self._max_items:
            entry = self._queue.popleft()
            if not entry[1].done():  # its caller was cancelled: never written
                batch.append(entry)
        return batch

    async def _drain(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            # No await between the last check of the queue and leaving
            # _flushing (finally): a submit cannot slip in unseen.
            while self._queue:
                await self._gather()
                batch = self._take()
                if not batch:
                    continue
                try:
                    results = await self._flush([item for item, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        except BaseException:  # cancelled (the loop shutting down): nobody left waiting
            for _, future in [*batch, *self._queue]:
                if not future.done():
                    future.set_exception(Unavailable("the server is shutting down"))
            self._queue.clear()
            raise
        finally:
            self._flushing = None
