"""The reporter: delivers each report, re-sending it until the server answers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

from asyncflow._sdk.errors import from_pb
from asyncflow._sdk.leases import LeaseKeeper
from asyncflow._sdk.stream import Answer
from asyncflow._sdk.transport import Transport
from asyncflow._sdk.waits import Backoff
from asyncflow.errors import (
    AsyncflowError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    ResourceExhausted,
    Unauthenticated,
)
from asyncflow.v1 import task_service_pb2 as pb

log = logging.getLogger("asyncflow.worker")


class _Unanswered:
    """The stream ended before the server answered: the report may or may not
    have been applied; send it again at once (a repeat is refused harmlessly)."""


class Reporter:
    """Delivers reports: on the open stream, else by SetTask.

    A report the server could not take (the store is down, the stream or the
    connection broke) is sent again with back-off until the server answers it,
    for as long as the task's lease lasts: the lease keeper keeps renewing it
    meanwhile, and each renewal the server accepts pushes the deadline out. Only
    once the deadline has passed is the report given up (stuck recovery then
    runs the stage again). A refusal that sending again cannot change (the
    lease is gone, the report is malformed) settles it at once.
    """

    def __init__(
        self,
        transport: Transport,
        leases: LeaseKeeper,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self._transport = transport
        self._leases = leases
        self._clock = clock
        self._sleep = sleep
        self._backoff = backoff
        self._pending: set[asyncio.Task[None]] = set()
        self._answers: set[Answer] = set()
        """Sent on a stream, not answered yet (no task waits for them: see send)."""

    @property
    def pending(self) -> int:
        """Reports not yet settled."""
        return len(self._pending) + len(self._answers)

    def send(self, task: pb.Task, report: pb.SetTaskRequest) -> None:
        """Deliver `report` (about `task`, as it was held) in the background."""
        # On the stream at once, so that it goes before a half-close that follows.
        stream = self._transport.open_stream()
        if stream is None:
            self._deliver_soon(task, report, None)
            return
        # The usual case, an accepted report, settles in the answer's callback: a
        # task per report (and its wake-ups) only for the few sent again.
        answer = stream.report(report)
        self._answers.add(answer)
        answer.add_done_callback(partial(self._answered, task, report))

    def _answered(self, task: pb.Task, report: pb.SetTaskRequest, answer: Answer) -> None:
        self._answers.discard(answer)
        result = None if answer.cancelled() else answer.result()
        if result is not None and not result.HasField("error"):
            self._leases.release(task.task_id)
            return
        # Refused, or the stream ended first: the retrying path (it reads the outcome).
        self._deliver_soon(task, report, None if answer.cancelled() else answer)

    def _deliver_soon(self, task: pb.Task, report: pb.SetTaskRequest, sent: Answer | None) -> None:
        delivering = asyncio.create_task(self._deliver(task, report, sent))
        self._pending.add(delivering)
        delivering.add_done_callback(self._pending.discard)

    async def settled(self) -> None:
        """Wait until every report sent so far (and since) is settled."""
        while self._pending or self._answers:
            await asyncio.gather(*self._pending, *self._answers, return_exceptions=True)

    async def _deliver(self, task: pb.Task, report: pb.SetTaskRequest, sent: Answer | None) -> None:
        backoff = self._backoff()
        failures = 0
        try:
            error = await _outcome(sent) if sent is not None else await self._attempt(report)
            while error is not None:
                # A stream that ended unanswered: again at once (by SetTask or on the
                # next stream); anything else waits for the back-off.
                if not isinstance(error, _Unanswered):
                    if not await self._wait_to_resend(task, report, error, backoff, failures):
                        return
                    failures += 1
                error = await self._attempt(report)
        finally:
            self._leases.release(task.task_id)

    async def _wait_to_resend(
        self,
        task: pb.Task,
        report: pb.SetTaskRequest,
        error: AsyncflowError,
        backoff: Backoff,
        failures: int,
    ) -> bool:
        """Wait before the next attempt; False if the report is settled (refused for
        good, or its lease has expired)."""
        if isinstance(error, FailedPrecondition | NotFound):
            # Already applied (a re-send after a lost answer), or the task was
            # recovered: nothing left to deliver either way.
            log.info("report for %s refused: %s", report.task_id, error)
            return False
        refused_for_good = InvalidArgument | ResourceExhausted | PermissionDenied | Unauthenticated
        if isinstance(error, refused_for_good) and not isinstance(error, RateLimited):
            log.error("report for %s refused: %s", report.task_id, error)
            return False
        deadline = self._leases.deadline(task.task_id) or task.lease.deadline
        left = deadline - self._clock()
        if left <= 0:
            log.error(
                "gave up reporting %s: its lease expired while the server could not"
                " take the report (%s)", report.task_id, error,
            )  # fmt: skip
            return False
        # Once per report at WARNING: an outage must not flood the log.
        log.log(
            logging.DEBUG if failures else logging.WARNING,
            "report for %s not delivered (%s); sending it again until its lease"
            " expires in %.0fs", report.task_id, error, left,
        )  # fmt: skip
        # Over the server's rate limit: not before the delay it asked for.
        await self._sleep(min(max(backoff.delay(), error.retry_delay or 0), left))
        return True

    async def _attempt(self, report: pb.SetTaskRequest) -> AsyncflowError | _Unanswered | None:
        """Send once: on the open stream, else by SetTask. None if the server took it."""
        stream = self._transport.open_stream()
        if stream is not None:
            return await _outcome(stream.report(report))
        try:
            await self._transport.set_task(report)
        except AsyncflowError as error:
            return error
        return None


async def _outcome(sent: Answer) -> AsyncflowError | _Unanswered | None:
    result = await sent
    if result is None:
        return _Unanswered()
    return from_pb(result.error) if result.HasField("error") else None
