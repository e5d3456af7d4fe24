"""The group-commit batcher alone (core/batching.py); the stores' side is in
tests/store/test_create_batching.py."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from asyncflow.core.batching import Batcher
from asyncflow.errors import InvalidArgument, Unavailable


class Flushes:
    """A flush that records its batches and, while `hold` is clear, waits for it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.entered = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(items)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.entered.set()
        try:
            await self.hold.wait()
        finally:
            self.in_flight -= 1
        if -1 in items:
            raise Unavailable("the store went away")
        return [InvalidArgument("odd", field="x") if i % 2 else i * 10 for i in items]


async def test_idle_flushes_at_once_and_gathers_while_one_is_in_flight() -> None:
    flush = Flushes()
    batcher: Batcher[int, int] = Batcher(flush, max_items=3)
    flush.hold.clear()
    first = asyncio.create_task(batcher.submit(0))
    await flush.entered.wait()  # started alone: no timer waited for company
    later = [asyncio.create_task(batcher.submit(i)) for i in (2, 4, 6, 8, 10)]
    flush.hold.set()
    assert await asyncio.gather(first, *later) == [0, 20, 40, 60, 80, 100]
    assert flush.batches == [[0], [2, 4, 6], [8, 10]]  # bounded at max_items
    assert flush.most_in_flight == 1


async def test_an_item_error_fails_its_caller_and_a_flush_error_the_batch() -> None:
    batcher: Batcher[int, int] = Batcher(Flushes(), max_items=10)
    results = await asyncio.gather(
        batcher.submit(2), batcher.submit(3), batcher.submit(4), return_exceptions=True
    )
    assert results[0] == 20
    assert isinstance(results[1], InvalidArgument)
    assert results[2] == 40
    failed = await asyncio.gather(batcher.submit(2), batcher.submit(-1), return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in failed)
    assert await batcher.submit(6) == 60  # and the batcher goes on


async def test_a_cancelled_caller_is_dropped_if_queued_and_harms_no_one() -> None:
    flush = Flushes()
    batcher: Batcher[int, int] = Batcher(flush, max_items=10)
    flush.hold.clear()
    in_flight = [asyncio.create_task(batcher.submit(i)) for i in (0, 2)]
    await flush.entered.wait()
    queued = [asyncio.create_task(batcher.submit(i)) for i in (4, 6)]
    for victim in (in_flight[0], queued[0]):
        victim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await victim
    flush.hold.set()
    assert await asyncio.gather(in_flight[1], queued[1]) == [20, 60]
    assert flush.batches == [[0, 2], [6]]  # 0 was written with its batch; 4 never


async def test_a_submit_right_after_a_flush_ends_is_flushed() -> None:
    """The race between "the last flush finished" and a new submit: no caller
    may be left waiting with no flush to carry it."""
    flush = Flushes()
    batcher: Batcher[int, int] = Batcher(flush, max_items=10)
    for i in range(50):
        assert await batcher.submit(i * 2) == i * 20


async def test_a_stopped_flusher_fails_its_waiters() -> None:
    flush = Flushes()
    batcher: Batcher[int, int] = Batcher(flush, max_items=1)
    flush.hold.clear()
    waiting = [asyncio.create_task(batcher.submit(i)) for i in (0, 2)]
    await flush.entered.wait()
    assert batcher._flushing is not None
    batcher._flushing.cancel()  # the server's loop shutting down
    for task in waiting:
        with pytest.raises(Unavailable):
            await task
