"""The scheduler: the worker's local queue of held tasks and its slots."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from asyncflow._sdk.job import Handler, release_report, run_handler
from asyncflow._sdk.leases import LeaseKeeper
from asyncflow._sdk.reporter import Reporter
from asyncflow.v1 import task_service_pb2 as pb

log = logging.getLogger("asyncflow.worker")


class Origin(Protocol):
    """The stream that pushed a task (polled tasks have none)."""

    @property
    def open(self) -> bool: ...

    def started(self, task_id: str) -> None: ...


@dataclass
class _Running:
    task: pb.Task
    handler: asyncio.Task[pb.SetTaskRequest]
    origin: Origin | None
    release: bool = False
    """Cancelled by drain(): give it back. (Cancelled otherwise: the lease is lost.)"""


class Scheduler:
    """Held tasks wait here, in arrival order, until one of `concurrency` slots is
    free; then their handler runs, and what it returns goes to the reporter.

    A task's lease is kept from its arrival; the reporter ends it once the
    report is settled (or the scheduler does, for a task that ends with none).
    `on_finished` hears of every slot freed, with the finished task's origin.
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        concurrency: int,
        leases: LeaseKeeper,
        reporter: Reporter,
        on_finished: Callable[[Origin | None], None] | None = None,
    ) -> None:
        self.concurrency = concurrency
        self._handlers = handlers
        self._leases = leases
        self._reporter = reporter
        self._on_finished = on_finished
        self._waiting: deque[tuple[pb.Task, Origin | None]] = deque()
        self._running: dict[str, _Running] = {}
        self.closed = False
        """Set by close(): no new stage starts; arrivals are given back."""
        self.slot_freed = asyncio.Event()
        """Set whenever a stage ends (clear it before waiting on it)."""
        self.completed = 0
        """Stages run and reported."""

    @property
    def room(self) -> int:
        """Free slots."""
        return self.concurrency - len(self._running)

    @property
    def waiting(self) -> list[str]:
        return [task.task_id for task, _ in self._waiting]

    @property
    def running(self) -> list[str]:
        return list(self._running)

    def accept(self, tasks: list[pb.Task], origin: Origin | None) -> None:
        """Queue newly held tasks and start as many as there are free slots."""
        if self.closed:
            for task in tasks:
                self._reporter.send(task, release_report(task))
            return
        self._leases.keep_all(tasks)
        self._waiting.extend((task, origin) for task in tasks)
        self._start_waiting()

    def lease_lost(self, task_id: str) -> None:
        """The server took the task back: abandon its stage, or forget it if it waits."""
        running = self._running.get(task_id)
        if running is not None:
            running.handler.cancel()  # nothing is reported: the report would be refused
        else:
            self._waiting = deque((t, o) for t, o in self._waiting if t.task_id != task_id)

    def cancelled(self, task_id: str, reason: str) -> None:
        """An operator cancelled the task: its handler is cancelled (it sees
        asyncio.CancelledError) and nothing is reported, or it never starts."""
        if task_id in self._leases:
            log.info("task %s was cancelled by an operator%s", task_id,
                     f": {reason}" if reason else "")  # fmt: skip
            self._leases.release(task_id)
        self.lease_lost(task_id)

    def forget(self, origin: Origin) -> None:
        """`origin` ended: the server gave back its un-started tasks itself."""
        for task, came_from in self._waiting:
            if came_from is origin:
                self._leases.release(task.task_id)
        self._waiting = deque((t, o) for t, o in self._waiting if o is not origin)

    def close(self) -> None:
        self.closed = True

    async def drain(self, grace: float) -> None:
        """Close; give back waiting tasks at once; let running stages finish within
        `grace` seconds, then cancel and give back the rest. Idempotent."""
        self.close()
        while self._waiting:
            task, _ = self._waiting.popleft()
            self._reporter.send(task, release_report(task))
        if self._running:
            await asyncio.wait([r.handler for r in self._running.values()], timeout=grace)
            for running in list(self._running.values()):
                running.release = True
                running.handler.cancel()
        while self._running:  # until the cancelled ones have ended (_finished)
            await asyncio.wait([r.handler for r in self._running.values()])

    def _start_waiting(self) -> None:
        while not self.closed and self._waiting and self.room > 0:
            task, origin = self._waiting.popleft()
            if origin is not None and not origin.open:
                self._leases.release(task.task_id)
                continue  # its stream is gone: the server has taken it back
            if origin is not None:
                origin.started(task.task_id)
            self._start(task, origin)

    def _start(self, task: pb.Task, origin: Origin | None) -> None:
        handler = self._handlers.get(task.task_type)
        if handler is None:  # not subscribed to it; cannot happen on a sane server
            log.error("no handler for %s; releasing %s", task.task_type, task.task_id)
            self._reporter.send(task, release_report(task))
            return
        running = _Running(task, asyncio.create_task(run_handler(handler, task)), origin)
        self._running[task.task_id] = running
        # A done callback rather than a supervising task per stage: one task and
        # its wake-ups fewer for every task a worker runs (drain profile).
        running.handler.add_done_callback(partial(self._finished, running))

    def _finished(self, running: _Running, _: object) -> None:
        """The stage's handler ended: report, free the slot, start the next."""
        task = running.task
        del self._running[task.task_id]
        try:
            if not running.handler.cancelled():
                self._reporter.send(task, running.handler.result())
                self.completed += 1
            elif running.release:
                self._reporter.send(task, release_report(task))
            else:
                self._leases.release(task.task_id)
        finally:
            if self._on_finished is not None:
                self._on_finished(running.origin)
            self._start_waiting()
            self.slot_freed.set()
