"""GroupCommit: concurrent callers share flushes; an item's refusal, a flush's
failure and a caller's cancellation each reach only whom they should."""

from __future__ import annotations

import asyncio

import pytest

from asyncflow.core.group import GroupCommit
from asyncflow.errors import Unavailable


class Recorder:
    """A flush that records its batches and can be held open or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None
        self.in_flight = 0
        self.most_in_flight = 0

    async def flush(self, items: list[int]) -> list[int | ValueError]:
        self.batches.append(items)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
            if self.fail is not None:
                raise self.fail
            return [ValueError(i) if i < 0 else i * 10 for i in items]
        finally:
            self.in_flight -= 1


async def settle() -> None:
    """Let every ready task run until it blocks (no time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_flushes_at_once_then_gathers_while_one_is_in_flight() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder.flush, max_items=100)
    recorder.gate.clear()
    first = asyncio.create_task(group.submit([1]))
    await settle()
    assert recorder.batches == [[1]]  # no timer: the first flush went at once
    later = [asyncio.create_task(group.submit([i, i + 1])) for i in (2, 4, 6)]
    await settle()
    assert recorder.batches == [[1]]  # one flush in flight at a time
    recorder.gate.set()
    assert await first == [10]
    assert [await t for t in later] == [[20, 30], [40, 50], [60, 70]]
    assert recorder.batches == [[1], [2, 3, 4, 5, 6, 7]]
    assert recorder.most_in_flight == 1


async def test_batches_are_bounded() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder.flush, max_items=4)
    recorder.gate.clear()
    calls = [asyncio.create_task(group.submit([i, i])) for i in range(5)]
    await settle()
    recorder.gate.set()
    await asyncio.gather(*calls)
    assert [len(b) for b in recorder.batches] == [4, 4, 2]
    assert await group.submit([]) == []


async def test_a_refused_item_fails_only_its_caller() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder.flush, max_items=100)
    recorder.gate.clear()
    calls = [asyncio.create_task(group.submit(items)) for items in ([1], [2, -3], [4])]
    await settle()
    recorder.gate.set()
    one, two, three = await asyncio.gather(*calls)
    assert (one, three) == ([10], [40])
    assert two[0] == 20
    assert isinstance(two[1], ValueError)


async def test_a_failed_flush_reaches_every_caller_of_its_batch_only() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder.flush, max_items=100)
    recorder.gate.clear()
    first = asyncio.create_task(group.submit([1]))
    await settle()
    recorder.fail = RuntimeError("the database went away")
    batch = [asyncio.create_task(group.submit([i])) for i in (2, 3)]
    await settle()
    recorder.gate.set()
    with pytest.raises(RuntimeError):
        await first
    for call in batch:
        with pytest.raises(RuntimeError):
            await call
    recorder.fail = None
    assert await group.submit([5]) == [50]  # the next flush starts afresh


async def test_a_cancelled_caller_does_not_cancel_the_flush() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder.flush, max_items=100)
    recorder.gate.clear()
    leaving = asyncio.create_task(group.submit([1]))
    staying = asyncio.create_task(group.submit([2]))
    await settle()
    leaving.cancel()
    await settle()
    recorder.gate.set()
    assert await staying == [20]
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert recorder.batches == [[1, 2]]
    assert await group.submit([3]) == [30]


async def test_a_cancelled_caller_is_dropped_while_queued() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder.flush, max_items=100)
    recorder.gate.clear()
    in_flight = asyncio.create_task(group.submit([1]))
    await settle()
    queued = [asyncio.create_task(group.submit([i])) for i in (2, 3)]
    await settle()
    queued[0].cancel()
    await settle()
    recorder.gate.set()
    assert (await in_flight, await queued[1]) == ([10], [30])
    assert recorder.batches == [[1], [3]]  # 2 was never written


async def test_a_submit_right_after_a_flush_ends_is_flushed() -> None:
    """The race between "the last flush finished" and a new submit: no caller
    may be left waiting with no flush to carry it."""
    group = GroupCommit(Recorder().flush, max_items=10)
    for i in range(50):
        assert await group.submit_one(i) == i * 10


async def test_a_stopped_flush_fails_its_waiters() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder.flush, max_items=1)
    recorder.gate.clear()
    waiting = [asyncio.create_task(group.submit_one(i)) for i in (1, 2)]
    await settle()
    for flushing in list(group._flushing):
        flushing.cancel()  # the server's loop shutting down
    for task in waiting:
        with pytest.raises(Unavailable):
            await task


async def submit_after(group: GroupCommit[int, int | ValueError], turns: int, item: int) -> object:
    """A call that reaches its submit `turns` turns of the loop after it started."""
    for _ in range(turns):
        await asyncio.sleep(0)
    return await group.submit_one(item)


async def first_batch_with_a_late_caller(group: GroupCommit[int, int | ValueError],
                                         recorder: Recorder, turns: int) -> list[int]:  # fmt: skip
    recorder.batches.clear()
    await asyncio.gather(group.submit_one(1), submit_after(group, turns, 2))
    return recorder.batches[0]


async def test_patience_waits_longer_for_late_callers_only_under_load() -> None:
    recorder = Recorder()
    plain = GroupCommit(recorder.flush, max_items=100)
    assert await first_batch_with_a_late_caller(plain, recorder, 6) == [1]  # 2 quiet turns
    patient = GroupCommit(recorder.flush, max_items=100, patience=16)
    # No load seen yet: a lone caller's flush waits as without patience.
    assert await first_batch_with_a_late_caller(patient, recorder, 6) == [1]
    for _ in range(12):  # busy: batches of 8 callers
        await asyncio.gather(*(patient.submit_one(i) for i in range(8)))
    assert await first_batch_with_a_late_caller(patient, recorder, 6) == [1, 2]
    for _ in range(40):  # quiet again: one caller at a time
        await patient.submit_one(1)
    assert await first_batch_with_a_late_caller(patient, recorder, 6) == [1]
