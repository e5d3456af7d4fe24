"""The worker's Poller and the StreamRunner's window, with fakes of their collaborators."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from worker_fakes import FakeStream, FakeTransport, task

from asyncflow._sdk.polling import Poller
from asyncflow._sdk.streaming import StreamRunner
from asyncflow.errors import AsyncflowError, InvalidArgument, Unavailable
from asyncflow.v1 import task_service_pb2 as pb


@dataclass
class FakeScheduler:
    """The Scheduler as the Poller and the StreamRunner see it."""

    concurrency: int
    accepted: list[str] = field(default_factory=list)
    slot_freed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def room(self) -> int:
        return self.concurrency - len(self.accepted)

    def accept(self, tasks: list[pb.Task], origin: object) -> None:
        assert origin is None  # polled tasks come from no stream
        self.accepted += [t.task_id for t in tasks]


class HoldScript(FakeTransport):
    """HoldTasks answers in turn; the worker is stopped once they are used up."""

    def __init__(self, stopping: asyncio.Event, *answers: list[pb.Task] | AsyncflowError) -> None:
        super().__init__()
        self.stopping = stopping
        self.answers = list(answers)
        self.holds: list[tuple[str, int]] = []

    async def hold_tasks(self, task_type: str, limit: int) -> list[pb.Task]:
        self.holds.append((task_type, limit))
        answer = self.answers.pop(0)
        if not self.answers:
            self.stopping.set()
        if isinstance(answer, AsyncflowError):
            raise answer
        return answer[:limit]


def poller(transport: HoldScript, scheduler: FakeScheduler, types: list[str]) -> Poller:
    return Poller(
        transport,  # type: ignore[arg-type]
        scheduler,  # type: ignore[arg-type]
        task_types=types,
        poll_interval=0.01,
        stopping=transport.stopping,
    )


def tasks(*ids: str) -> list[pb.Task]:
    return [task(i) for i in ids]


async def test_holds_only_what_free_slots_can_take_type_after_type() -> None:
    scheduler = FakeScheduler(concurrency=5)
    transport = HoldScript(asyncio.Event(), tasks("a1", "a2", "a3"), tasks("b1", "b2", "b3"))
    await asyncio.wait_for(poller(transport, scheduler, ["a", "b", "c"]).run(), 5)
    assert transport.holds == [("a", 5), ("b", 2)]  # no room left for c
    assert scheduler.accepted == ["a1", "a2", "a3", "b1", "b2"]


async def test_an_empty_or_failed_hold_waits_then_polls_again() -> None:
    scheduler = FakeScheduler(concurrency=2)
    transport = HoldScript(asyncio.Event(), [], Unavailable("down"), tasks("x"))
    await asyncio.wait_for(poller(transport, scheduler, ["a"]).run(), 5)
    assert transport.holds == [("a", 2), ("a", 2), ("a", 2)]
    assert scheduler.accepted == ["x"]


async def test_an_invalid_hold_stops_the_worker() -> None:
    transport = HoldScript(asyncio.Event(), InvalidArgument("bad", field="task_type"), [])
    with pytest.raises(InvalidArgument):
        await poller(transport, FakeScheduler(concurrency=1), ["a"]).run()


async def test_a_finished_task_of_another_stream_widens_the_current_window() -> None:
    transport = FakeTransport()
    transport.stream = current = FakeStream(window=3)
    runner = StreamRunner(
        transport,  # type: ignore[arg-type]
        FakeScheduler(concurrency=4),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        task_types=["a"],
        prefetch=1,
        worker_id="w",
        stopping=asyncio.Event(),
        drain=lambda: asyncio.sleep(0),
    )
    runner.task_finished(current)  # the server frees its own slots: nothing to do
    assert current.windows == []
    runner.task_finished(object())  # an older stream's task (or a polled one)
    runner.task_finished(None)
    runner.task_finished(None)
    assert current.windows == [4, 5]  # never above concurrency + prefetch
