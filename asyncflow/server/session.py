"""One WorkTasks session: push due tasks within the worker's window, take its reports.

The window is enforced here, on the server: a stream never has more than
`window` pushed tasks that are neither reported nor released. When the stream
ends, pushed tasks the worker never started go back to PENDING at once; tasks
it started stay leased until their deadline (or their report, which may arrive
on another stream or by SetTask), then stuck recovery handles them. The
messages of a stream move through asyncflow.server.dispatch.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asyncflow.core.model import Release, Report, Task
from asyncflow.core.service import TaskCore
from asyncflow.core.validate import check_range
from asyncflow.errors import AsyncflowError, FailedPrecondition, InvalidArgument, NotFound
from asyncflow.server.auth.scope import check_task, check_type
from asyncflow.server.convert import error_to_pb, fill_task, outcome_from_pb, task_to_pb
from asyncflow.server.wakeup import WakeHub
from asyncflow.v1 import task_service_pb2 as pb

log = logging.getLogger(__name__)

Write = Callable[[pb.WorkTasksResponse], Awaitable[None]]
Response = pb.WorkTasksResponse
_ids = itertools.count(1)


@dataclass
class Pushed:
    task: Task
    """As pushed (or last renewed on this stream): a report is decided on it
    without reading the row again (the write is fenced by its version)."""
    started: bool = False

    @property
    def lease_token(self) -> str:
        return self.task.lease_token


class WorkSession:
    def __init__(
        self,
        core: TaskCore,
        hub: WakeHub,
        task_types: list[str],
        window: int,
        poll_interval: float,
        worker_id: str,
    ) -> None:
        self.core = core
        self.hub = hub
        self.task_types = task_types
        self.window = window
        self.poll_interval = poll_interval
        self.worker_id = worker_id
        self.key = f"s{next(_ids)}-{uuid.uuid4().hex[:8]}"
        self.outstanding: dict[str, Pushed] = {}
        self.max_outstanding = 0
        """Most un-reported tasks this stream ever had (the window's witness)."""
        self.reserved = 0
        """Slots reserved for tasks a create is handing off (counted in the window)."""
        self.claiming = 0
        """Slots a hold in flight may fill (not free for a hand-off meanwhile)."""
        self.notify: Callable[[Response], None] | None = None
        """Puts a push in the stream's outbox from outside the push loop (hand-offs)."""
        self._releasing: set[asyncio.Task[object]] = set()
        self.closed = False
        self.finished = asyncio.Event()
        """Set once the stream ended and its un-started tasks were released."""
        self._event = asyncio.Event()

    @classmethod
    async def open(cls, core: TaskCore, hub: WakeHub, subscribe: pb.WorkTasksRequest.Subscribe
                   ) -> WorkSession:  # fmt: skip
        if not subscribe.task_types:
            raise InvalidArgument("subscribe.task_types is empty", field="subscribe.task_types")
        types = list(dict.fromkeys(subscribe.task_types))
        for task_type in types:
            check_type(task_type, "subscribe.task_types")
        configs = [await core.task_type(t, field="subscribe.task_types") for t in types]
        window = check_window(subscribe.window, core, "subscribe.window")
        return cls(
            core,
            hub,
            types,
            window,
            poll_interval=float(min(c.schedule_interval for c in configs)),
            worker_id=loggable(subscribe.worker_id[:128]),
        )

    # -- waking -------------------------------------------------------------------

    def wake(self) -> None:
        self._event.set()

    def close(self) -> None:
        self.closed = True
        self.hub.forget(self)
        self._event.set()

    # -- pushing ------------------------------------------------------------------

    async def push_loop(self, write: Write) -> None:
        """Hold due tasks whenever there is room, until the session closes."""
        rotation = deque(self.task_types)
        while not self.closed:
            self._event.clear()
            room = self.window - len(self.outstanding) - self.reserved
            more = False
            if room > 0:
                self.hub.want(self, self.task_types)
                try:
                    more = await self._fill(rotation, room, write)
                except AsyncflowError as exc:  # the store is down: try again later
                    log.warning("stream %s could not hold tasks: %s", self.key, exc)
            if self.closed:
                return
            if more:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout=self.poll_interval)

    async def _fill(self, rotation: deque[str], room: int, write: Write) -> bool:
        """One round over the subscribed types; True if one gave tasks and the
        window still has room (a hold bounded by bytes may have left more due).

        Each hold is one pushed message: the core bounds it by limits.max_reply_bytes.
        """
        pushed = False
        for _ in range(len(rotation)):
            task_type = rotation[0]
            rotation.rotate(-1)
            self.claiming = room  # a hand-off meanwhile must leave this room alone
            try:
                tasks = await self.core.hold_tasks(task_type, room)
            finally:
                self.claiming = 0
            if not tasks:
                continue
            pushed = True
            self.core.metrics.tasks("pushed", task_type, "", len(tasks))
            for task in tasks:
                self.outstanding[task.task_id] = Pushed(task)
            self.max_outstanding = max(self.max_outstanding, len(self.outstanding))
            await write(pushed_tasks(tasks))
            if len(tasks) == room:
                # There may be more due: pass the baton to another waiting stream.
                self.hub.wake(task_type, 1)
                return False
            room -= len(tasks)
        return pushed and room > 0

    # -- hand-offs (asyncflow.core.ports.HandOff, through WakeHub.offer) -----------

    def slot(self) -> HandOffSlot | None:
        room = self.window - len(self.outstanding) - self.reserved - self.claiming
        if self.closed or self.notify is None or room <= 0:
            return None
        self.reserved += 1
        return HandOffSlot(self, secrets.token_hex(16))

    def handed(self, task: Task) -> None:
        """A create committed `task` leased to a slot of this stream: push it."""
        self.reserved -= 1
        if self.closed or self.notify is None or len(self.outstanding) >= self.window:
            # The stream ended, or its window was lowered meanwhile: give it back.
            releasing = asyncio.ensure_future(
                self.core.set_task(task.task_id, task.lease_token, Release())
            )
            self._releasing.add(releasing)
            releasing.add_done_callback(self._released)
            return
        self.outstanding[task.task_id] = Pushed(task)
        self.max_outstanding = max(self.max_outstanding, len(self.outstanding))
        self.core.metrics.tasks("held", task.task_type, "", 1)
        self.core.metrics.tasks("pushed", task.task_type, "", 1)
        self.notify(pushed_tasks([task]))

    def _released(self, releasing: asyncio.Task[object]) -> None:
        self._releasing.discard(releasing)
        if not releasing.cancelled() and (failure := releasing.exception()) is not None:
            # Its lease expires and stuck recovery returns it.
            log.warning("stream %s could not give back a handed-off task: %r", self.key, failure)

    # -- requests -----------------------------------------------------------------

    async def handle(self, request: pb.WorkTasksRequest) -> Response | None:
        which = request.WhichOneof("request")
        if which == "set_window":
            self.window = check_window(request.set_window.window, self.core, "set_window.window")
            self.wake()
            return None
        if which == "started":
            for task_id in request.started.task_ids:
                if task_id in self.outstanding:
                    self.outstanding[task_id].started = True
            return None
        if which == "reports":
            answer = Response()
            answer.report_results.SetInParent()  # an answer even to an empty batch
            await self._reports(list(request.reports.reports), answer.report_results)
            self.wake()
            return answer
        if which == "extend":
            extended = await asyncio.gather(*(self._extend(r) for r in request.extend.leases))
            return Response(extend_results=Response.ExtendResults(results=extended))
        raise InvalidArgument(
            f"{which or 'an empty message'} is not allowed after subscribe", field="request"
        )

    async def _reports(
        self, reports: list[pb.SetTaskRequest], answer: Response.ReportResults
    ) -> None:
        """Apply a batch of reports; a result for each goes into `answer`, in order."""
        decoded: list[Report | AsyncflowError] = []
        for report in reports:
            try:
                check_task(report.task_id)
                context = report.context if report.HasField("context") else None
                decoded.append(
                    Report(report.task_id, report.lease_token, outcome_from_pb(report), context)
                )
            except AsyncflowError as bad:
                decoded.append(bad)
        valid = [r for r in decoded if isinstance(r, Report)]
        known = {r.task_id: p.task for r in valid if (p := self.outstanding.get(r.task_id))}
        applied = iter(await self.core.set_tasks(valid, known))
        add = answer.results.add  # filled in place (server.convert.fill_task)
        for report, item in zip(reports, decoded, strict=True):
            outcome = next(applied) if isinstance(item, Report) else item
            if isinstance(outcome, AsyncflowError):
                pushed = self.outstanding.get(report.task_id)
                ours = pushed is not None and pushed.lease_token == report.lease_token
                if ours and isinstance(outcome, FailedPrecondition | NotFound):
                    del self.outstanding[report.task_id]  # the lease is gone: not ours now
                # Other errors (a bad report): the worker may fix it and resend.
                add(task_id=report.task_id).error.CopyFrom(error_to_pb(outcome))
            else:
                self.outstanding.pop(report.task_id, None)
                fill_task(add(task_id=report.task_id).task, outcome)

    async def _extend(self, lease: pb.ExtendLeaseRequest) -> pb.ExtendResult:
        try:
            check_task(lease.task_id)
            task = await self.core.extend_lease(lease.task_id, lease.lease_token)
        except AsyncflowError as refused:
            return pb.ExtendResult(task_id=lease.task_id, error=error_to_pb(refused))
        pushed = self.outstanding.get(task.task_id)
        if pushed is not None and pushed.lease_token == task.lease_token:
            pushed.task = task
        return pb.ExtendResult(task_id=lease.task_id, lease=to_pb(task).lease)

    def drop_cancelled(self, held: list[tuple[str, str]]) -> list[str]:
        """Forget the pushed tasks an operator cancelled under the lease this stream
        pushed them with: their slots are free. Returns their ids."""
        dropped = [
            task_id
            for task_id, token in held
            if (pushed := self.outstanding.get(task_id)) and pushed.lease_token == token
        ]
        for task_id in dropped:
            del self.outstanding[task_id]
        if dropped:
            self.wake()
        return dropped

    async def release_unstarted(self) -> int:
        """Give back every pushed task the worker never started."""
        unstarted = [(i, p) for i, p in self.outstanding.items() if not p.started]
        results = await asyncio.gather(
            *(self.core.set_task(task_id, p.lease_token, Release()) for task_id, p in unstarted),
            return_exceptions=True,
        )
        for (task_id, _), result in zip(unstarted, results, strict=True):
            self.outstanding.pop(task_id, None)
            if isinstance(result, BaseException) and not isinstance(result, AsyncflowError):
                log.warning("stream %s could not release %s: %r", self.key, task_id, result)
        return len(unstarted)


class HandOffSlot:
    """One reserved slot of a stream (asyncflow.core.ports.Taker)."""

    def __init__(self, session: WorkSession, lease_token: str) -> None:
        self._session = session
        self.lease_token = lease_token

    def take(self, task: Task) -> None:
        self._session.handed(task)

    def cancel(self) -> None:
        self._session.reserved -= 1


def loggable(text: str) -> str:
    """Client text fit for a log line: a newline or control character could forge lines."""
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


def to_pb(task: Task) -> pb.Task:
    return task_to_pb(task, with_token=True)


def pushed_tasks(tasks: list[Task]) -> Response:
    """A push of `tasks` (leases included), filled in place: no message per task
    built and then copied into the push."""
    response = Response()
    response.tasks.SetInParent()
    add = response.tasks.tasks.add
    for task in tasks:
        fill_task(add(), task, with_token=True)
    return response


def check_window(window: int, core: TaskCore, field: str) -> int:
    return check_range(window, field, 0 if field == "set_window.window" else 1,
                       core.limits.max_hold_limit)  # fmt: skip
