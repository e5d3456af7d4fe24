"""Queue depth: tasks by type and status, counted on an interval, never per scrape.

Each count is one `SELECT status, COUNT(*) ... GROUP BY status` per table of
each type (data_begin_pos..end_pos), which the database answers from the
(status, order_time) index without reading rows, but still in time linear in
the rows: about a second per few million rows on MariaDB. So it runs every
http.queue_depth_interval_seconds, one pass at a time, in every process that
serves HTTP (independent of which replica leads governance: each replica
exposes the depth itself, and a dashboard takes the max across replicas). A
value is at most one interval plus one pass old; the time of the last count
is exported next to it. docs/metrics.md weighs the cost.

The passes also give the dashboard its recent throughput: how many tasks were
created and finished per minute, from the change between counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from asyncflow.core.model import TaskStatus
from asyncflow.core.service import TaskCore
from asyncflow.http.metrics import PrometheusMetrics

log = logging.getLogger(__name__)

THROUGHPUT_WINDOW = 300.0
"""Seconds of counts the recent throughput is measured over."""
STOP_WAIT = 5.0
"""Seconds stop() waits for a count in progress."""
THROUGHPUT_MIN_SPAN = 10.0
"""Counts closer than this say nothing per minute worth showing."""

Counts = dict[str, dict[TaskStatus, int]]


@dataclass(frozen=True)
class Throughput:
    created_per_minute: float
    finished_per_minute: float
    """Tasks that reached a terminal status (SUCCESS, FAILED, CANCELLED)."""


class QueueDepth:
    def __init__(
        self,
        core: TaskCore,
        metrics: PrometheusMetrics,
        interval: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = core
        self.timer = timer
        self.metrics = metrics
        self.interval = interval
        self.counts: Counts = {}
        """The last count, by type."""
        self.counted_at: int | None = None
        """When it was taken (the core's clock), None before the first."""
        self._samples: deque[tuple[float, Counts]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def refresh(self) -> None:
        """Count once (a failure is logged, and the last count stays)."""
        started = time.perf_counter()
        try:
            counts = {
                config.task_type: await self.core.count_tasks(config.task_type)
                for config in await self.core.list_types()
            }
        except Exception:
            self.metrics.depth_failed()
            log.warning("counting the queue depth failed", exc_info=True)
            return
        self.counts, self.counted_at = counts, self.core.clock.now()
        self.metrics.set_depth(counts, time.time(), time.perf_counter() - started)
        now = self.timer()
        self._samples.append((now, counts))
        while len(self._samples) > 2 and self._samples[1][0] <= now - THROUGHPUT_WINDOW:
            self._samples.popleft()

    def throughput(self, task_type: str) -> Throughput | None:
        """Per minute over the last few minutes' counts; None until the counts
        span THROUGHPUT_MIN_SPAN. Retention dropping tables lowers counts: such a
        drop reads as zero."""
        if not self._samples:
            return None
        (first_time, first), (last_time, last) = self._samples[0], self._samples[-1]
        if last_time - first_time < THROUGHPUT_MIN_SPAN:
            return None
        minutes = (last_time - first_time) / 60
        before, after = first.get(task_type, {}), last.get(task_type, {})

        def rate(statuses: tuple[TaskStatus, ...]) -> float:
            change = sum(after.get(s, 0) - before.get(s, 0) for s in statuses)
            return max(change, 0) / minutes

        finished = tuple(status for status in TaskStatus if status.terminal)
        return Throughput(rate(tuple(TaskStatus)), rate(finished))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="queue-depth")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.interval)

    async def stop(self) -> None:
        """Let a count in progress end (a query cancelled inside the driver could
        spoil its connection); cancel it only past STOP_WAIT."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=STOP_WAIT)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
