"""A WorkTasks session and its dispatch, on a real core over fakes of the ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fakes import FakeStore, RecordingCache
from waiting import eventually

from asyncflow.clock import ManualClock
from asyncflow.core.model import CreateRequest, Success, TaskStatus, TypeSettings
from asyncflow.core.service import TaskCore
from asyncflow.errors import InvalidArgument, TaskTypeNotFound
from asyncflow.server.convert import task_to_pb
from asyncflow.server.dispatch import Dispatcher
from asyncflow.server.session import Response, WorkSession
from asyncflow.server.wakeup import WakeHub
from asyncflow.v1 import task_service_pb2 as pb

NOW = 1_800_000_000
Request = pb.WorkTasksRequest


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
async def core(clock: ManualClock) -> TaskCore:
    core = TaskCore(FakeStore(), RecordingCache(), clock)
    await core.register_type(TypeSettings("lark", schedule_interval=60))
    await core.register_type(TypeSettings("owl", schedule_interval=5))
    return core


def subscribe(*task_types: str, window: int = 2) -> pb.WorkTasksRequest.Subscribe:
    return Request.Subscribe(task_types=task_types, window=window)


async def statuses(core: TaskCore) -> dict[TaskStatus, int]:
    return await core.count_tasks("lark")


class Pusher:
    """Runs a session's push loop, collecting what it writes."""

    def __init__(self, session: WorkSession) -> None:
        self.session = session
        self.pushed: list[pb.Task] = []
        self._loop = asyncio.create_task(session.push_loop(self._write))

    async def _write(self, response: Response) -> None:
        self.pushed.extend(response.tasks.tasks)

    async def until(self, count: int) -> None:
        async def arrived() -> bool:
            return len(self.pushed) >= count

        await eventually(arrived, within=5, what=f"{count} pushed tasks")

    async def stop(self) -> None:
        self.session.close()
        await self._loop


def reports(*items: tuple[pb.Task, str]) -> Request:
    return Request(reports=Request.Reports(reports=[
        pb.SetTaskRequest(task_id=task.task_id, lease_token=token,
                          success=pb.SetTaskRequest.Success())
        for task, token in items
    ]))  # fmt: skip


async def test_open_checks_the_subscription(core: TaskCore) -> None:
    hub = WakeHub(core.clock)
    session = await WorkSession.open(core, hub, subscribe("owl", "lark", "owl", window=3))
    assert (session.task_types, session.window, session.poll_interval) == (["owl", "lark"], 3, 5)
    for bad, error, field in [
        (subscribe(), InvalidArgument, "subscribe.task_types"),
        (subscribe("ghost"), TaskTypeNotFound, "subscribe.task_types"),
        (subscribe("lark", window=0), InvalidArgument, "subscribe.window"),
        (subscribe("lark", window=2001), InvalidArgument, "subscribe.window"),
    ]:
        with pytest.raises(error) as refused:
            await WorkSession.open(core, hub, bad)
        assert refused.value.field == field


async def test_pushes_within_the_window_and_reports_make_room(core: TaskCore) -> None:
    await core.create_tasks([CreateRequest("lark") for _ in range(5)])
    session = await WorkSession.open(core, WakeHub(core.clock), subscribe("lark", window=2))
    pusher = Pusher(session)
    try:
        await pusher.until(2)
        assert (await statuses(core))[TaskStatus.PROCESSING] == 2  # the rest not even held
        first = pusher.pushed[0]
        answer = await session.handle(reports((first, first.lease.token)))
        assert answer is not None
        (result,) = answer.report_results.results
        assert result.task.status == pb.TASK_STATUS_SUCCESS
        await pusher.until(3)  # the freed slot is filled at once, not at the next poll
        assert (await statuses(core))[TaskStatus.PROCESSING] == 2
        assert session.max_outstanding == 2
    finally:
        await pusher.stop()


async def test_a_wrong_token_keeps_the_slot_a_lost_lease_frees_it(core: TaskCore) -> None:
    await core.create_tasks([CreateRequest("lark") for _ in range(2)])
    session = await WorkSession.open(core, WakeHub(core.clock), subscribe("lark", window=2))
    pusher = Pusher(session)
    try:
        await pusher.until(2)
        mine, lost = pusher.pushed
        answer = await session.handle(reports((mine, "forged")))
        assert answer is not None
        assert answer.report_results.results[0].error.reason == "LEASE_LOST"
        assert mine.task_id in session.outstanding  # someone else's mistake: still ours
        # The lease of `lost` ends elsewhere (e.g. a SetTask on another connection).
        await core.set_task(lost.task_id, lost.lease.token, Success())
        answer = await session.handle(reports((lost, lost.lease.token)))
        assert answer is not None
        assert answer.report_results.results[0].error.reason == "TASK_NOT_PROCESSING"
        assert lost.task_id not in session.outstanding  # the pushed lease is gone
    finally:
        await pusher.stop()


async def test_requests_change_the_window_extend_and_refuse_a_second_subscribe(
    core: TaskCore, clock: ManualClock
) -> None:
    await core.create_tasks([CreateRequest("lark")])
    session = await WorkSession.open(core, WakeHub(core.clock), subscribe("lark", window=1))
    assert await session.handle(Request(set_window=Request.SetWindow(window=0))) is None
    assert session.window == 0  # a worker draining asks for nothing more
    with pytest.raises(InvalidArgument) as over:
        await session.handle(Request(set_window=Request.SetWindow(window=2001)))
    assert over.value.field == "set_window.window"
    (task,) = await core.hold_tasks("lark", 1)
    clock.advance(10)
    extend = Request(extend=Request.Extend(leases=[
        pb.ExtendLeaseRequest(task_id=task.task_id, lease_token=task.lease_token),
        pb.ExtendLeaseRequest(task_id=task.task_id, lease_token="forged"),
    ]))  # fmt: skip
    answer = await session.handle(extend)
    assert answer is not None
    good, bad = answer.extend_results.results
    assert good.lease.deadline == NOW + 10 + 30
    assert bad.error.reason == "LEASE_LOST"
    with pytest.raises(InvalidArgument) as again:
        await session.handle(Request(subscribe=subscribe("lark")))
    assert again.value.field == "request"


async def test_stream_end_releases_only_the_unstarted_tasks(core: TaskCore) -> None:
    await core.create_tasks([CreateRequest("lark") for _ in range(3)])
    session = await WorkSession.open(core, WakeHub(core.clock), subscribe("lark", window=3))
    pusher = Pusher(session)
    await pusher.until(3)
    await pusher.stop()
    started = pusher.pushed[0]
    await session.handle(Request(started=Request.Started(task_ids=[started.task_id])))
    assert await session.release_unstarted() == 2
    assert list(session.outstanding) == [started.task_id]  # its lease runs on
    assert (await statuses(core))[TaskStatus.PENDING] == 2
    assert (await core.get_task(started.task_id)).status is TaskStatus.PROCESSING


async def requests(*messages: Request) -> AsyncIterator[Request]:
    for message in messages:
        yield message


async def test_dispatch_answers_what_it_read_then_ends_with_the_first_failure(
    core: TaskCore,
) -> None:
    """A bad request ends the stream with its error, but only after the report
    read before it is applied and answered, and the un-started tasks released."""
    await core.create_tasks([CreateRequest("lark") for _ in range(2)])
    dispatcher = Dispatcher(core, WakeHub(core.clock))
    (task,) = await core.hold_tasks("lark", 1)  # reported on the stream, held elsewhere
    stream = dispatcher.serve(requests(
        Request(subscribe=subscribe("lark", window=1)),
        reports((task_to_pb(task, with_token=True), task.lease_token)),
        Request(subscribe=subscribe("lark")),  # not allowed after subscribe
    ))  # fmt: skip
    answers: list[Response] = []

    async def drain() -> None:
        async for response in stream:
            answers.append(response)

    with pytest.raises(InvalidArgument) as ended:
        await drain()
    assert ended.value.field == "request"
    assert answers[0].subscribed.window == 1
    reported = [a for a in answers if a.HasField("report_results")]
    assert reported[0].report_results.results[0].task.status == pb.TASK_STATUS_SUCCESS
    assert dispatcher.sessions == {}
    counts = await statuses(core)
    assert (counts[TaskStatus.SUCCESS], counts[TaskStatus.PROCESSING]) == (1, 0)


class GatedStore(FakeStore):
    """Claims wait at a gate, so a test can act while a hold is in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.claiming = asyncio.Event()

    async def task_claim_due_many(self, config, claims):  # type: ignore[no-untyped-def]
        self.claiming.set()
        await self.gate.wait()
        return await super().task_claim_due_many(config, claims)


async def test_a_hand_off_never_takes_the_room_of_a_hold_in_flight(clock: ManualClock) -> None:
    store = GatedStore()
    hub = WakeHub(clock)
    core = TaskCore(store, RecordingCache(), clock, on_due=hub, handoff=hub)
    await core.register_type(TypeSettings("lark", schedule_interval=60))
    store.gate.set()
    await core.create_tasks([CreateRequest("lark") for _ in range(2)])  # no stream yet
    store.gate.clear()
    session = await WorkSession.open(core, hub, subscribe("lark", window=2))
    pusher = Pusher(session)
    session.notify = lambda response: pusher.pushed.extend(response.tasks.tasks)
    await asyncio.wait_for(store.claiming.wait(), 5)  # its hold of 2 is in flight
    (third, _) = await core.create_task(CreateRequest("lark"))
    assert third.status is TaskStatus.PENDING  # no slot free for a hand-off
    store.gate.set()
    await pusher.until(2)
    assert session.max_outstanding == 2
    await pusher.stop()
