"""Fakes of the worker parts' collaborators (no server, no network), for tests/unit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from waiting import eventually

from asyncflow.errors import AsyncflowError
from asyncflow.v1 import task_service_pb2 as pb

DEADLINE = 1_800_000_030
NOW = 1_800_000_000.0


def task(task_id: str, task_type: str = "lark", deadline: int = DEADLINE) -> pb.Task:
    held = pb.Task(task_id=task_id, task_type=task_type, task_stage="s")
    held.lease.token, held.lease.attempt, held.lease.deadline = f"token-{task_id}", 1, deadline
    return held


def outcome(report: pb.SetTaskRequest) -> str:
    return report.WhichOneof("outcome") or ""


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Let the code under test run until `predicate` holds (fails after 5 s)."""

    async def holds() -> bool:
        return predicate()

    await eventually(holds, within=5, what=what)


class FakeClock:
    """Time that only moves when the code under test sleeps."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # still let other tasks run


class Ticker(FakeClock):
    """A clock whose sleeps also wait for the test to say `tick()` (for endless loops)."""

    def __init__(self, now: float = NOW) -> None:
        super().__init__(now)
        self._ticks: asyncio.Queue[None] = asyncio.Queue()
        self.cancelled = 0

    def tick(self) -> None:
        self._ticks.put_nowait(None)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        try:
            await self._ticks.get()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.now += seconds


@dataclass
class FakeLeases:
    """The LeaseKeeper as the Scheduler and the Reporter see it."""

    kept: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    deadlines: dict[str, int] = field(default_factory=dict)

    def keep(self, held: pb.Task) -> None:
        self.kept.append(held.task_id)

    def keep_all(self, held: list[pb.Task]) -> None:
        self.kept += [task.task_id for task in held]

    def release(self, task_id: str) -> None:
        self.released.append(task_id)

    def deadline(self, task_id: str) -> int | None:
        return self.deadlines.get(task_id)


@dataclass
class FakeReporter:
    sent: list[tuple[str, str]] = field(default_factory=list)
    """(task id, outcome) in the order reports were handed over."""
    reports: list[pb.SetTaskRequest] = field(default_factory=list)

    def send(self, held: pb.Task, report: pb.SetTaskRequest) -> None:
        self.sent.append((held.task_id, outcome(report)))
        self.reports.append(report)


@dataclass
class FakeOrigin:
    """A stream as the Scheduler sees it."""

    open: bool = True
    started_ids: list[str] = field(default_factory=list)

    def started(self, task_id: str) -> None:
        self.started_ids.append(task_id)


class FakeStream:
    """An open WorkTasks stream: the test answers each report."""

    def __init__(self, window: int = 0) -> None:
        self.open = True
        self.window = window
        self.windows: list[int] = []
        """Windows asked for with set_window, in turn."""
        self.answers: list[tuple[pb.SetTaskRequest, asyncio.Future[pb.ReportResult | None]]] = []
        self.extended: list[str] = []

    def report(self, report: pb.SetTaskRequest) -> asyncio.Future[pb.ReportResult | None]:
        answer: asyncio.Future[pb.ReportResult | None] = asyncio.get_running_loop().create_future()
        self.answers.append((report, answer))
        return answer

    def extend(self, task_id: str, lease_token: str) -> None:
        self.extended.append(task_id)

    def set_window(self, window: int) -> None:
        if window != self.window:
            self.window = window
            self.windows.append(window)

    def answer(self, error: AsyncflowError | None = None) -> None:
        """Answer the oldest unanswered report (accepted, or refused with `error`)."""
        report, answer = next((r, a) for r, a in self.answers if not a.done())
        result = pb.ReportResult(task_id=report.task_id)
        if error is None:
            result.task.task_id = report.task_id
        else:
            result.error.code, result.error.reason = error.code, error.reason
            result.error.message = error.message
        answer.set_result(result)

    def end(self) -> None:
        self.open = False
        for _, answer in self.answers:
            if not answer.done():
                answer.set_result(None)


class FakeTransport:
    """The stream (when one is open) and scripted unary calls."""

    def __init__(self) -> None:
        self.stream: FakeStream | None = None
        self.set_task_results: list[AsyncflowError | None] = []
        """What each SetTask does, in turn (None: accepted); the last one repeats."""
        self.set_task_calls: list[tuple[float, pb.SetTaskRequest]] = []
        self.extend_results: list[AsyncflowError | int] = []
        self.extend_calls: list[str] = []
        self.clock: Callable[[], float] = lambda: NOW

    def open_stream(self) -> FakeStream | None:
        return self.stream if self.stream is not None and self.stream.open else None

    async def set_task(self, report: pb.SetTaskRequest) -> None:
        self.set_task_calls.append((self.clock(), report))
        results = self.set_task_results
        result = results.pop(0) if len(results) > 1 else results[0]
        if result is not None:
            raise result

    async def extend_lease(self, task_id: str, lease_token: str) -> int:
        self.extend_calls.append(task_id)
        results = self.extend_results
        result = results.pop(0) if len(results) > 1 else results[0]
        if isinstance(result, AsyncflowError):
            raise result
        return result
