"""Runs the governance loops of one replica: leader-per-loop.

For each loop, the replica that takes the loop's lock becomes its leader: it
runs a pass every interval and keeps the lock alive with the watchdog while
it lives. The others retry the lock every third of its TTL, so when a leader
dies (or stops renewing) another replica takes over soon after the TTL runs
out. A failing pass is logged and the leader carries on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

from asyncflow.core.governance import Governance
from asyncflow.core.ports import Metrics, NoMetrics
from asyncflow.lock import LockBackend, raise_if_cancelled, run_exclusive

log = logging.getLogger(__name__)


def replica_id() -> str:
    """Who holds a lock, as operators will read it in Redis."""
    return f"{socket.gethostname()}:{os.getpid()}"


Loop = tuple[float, Callable[[], Awaitable[int]]]
"""A loop's interval in seconds, and its pass."""


class Governor:
    def __init__(
        self,
        governance: Governance,
        locks: LockBackend,
        key_prefix: str,
        metrics: Metrics | None = None,
        more_loops: Mapping[str, Loop] | None = None,
    ) -> None:
        self.governance = governance
        self.metrics = metrics or NoMetrics()
        self.more_loops = dict(more_loops or {})
        """Loops of other parts (the cron schedules), led under the same rules."""
        self.locks = locks
        self.key_prefix = key_prefix
        self.owner = replica_id()
        self._tasks: list[asyncio.Task[None]] = []

    def loops(self) -> dict[str, Loop]:
        settings = self.governance.settings
        loops: dict[str, Loop] = {
            "recover_stuck": (settings.long_process_interval, self.governance.recover_stuck),
            "split": (settings.split_interval, self.governance.split_tables),
            "advance_begin": (settings.move_interval, self.governance.advance_begin),
        }
        if settings.retention_days > 0:
            loops["retention"] = (settings.retention_interval, self.governance.drop_retired)
        return loops | self.more_loops

    def lock_key(self, loop: str) -> str:
        return f"{self.key_prefix}lock:{loop}"

    def start(self) -> None:
        for name, (interval, action) in self.loops().items():
            self._tasks.append(
                asyncio.create_task(self._run(name, interval, action), name=f"governance-{name}")
            )

    async def _run(self, name: str, interval: float, action: Callable[[], Awaitable[int]]) -> None:
        ttl = self.governance.settings.lock_ttl_seconds

        async def lead() -> None:
            log.info(
                "leading governance loop %s", name,
                extra={"action": "lead", "loop": name, "owner": self.owner},
            )  # fmt: skip
            while True:
                started, failed = time.perf_counter(), False
                try:
                    await action()
                except Exception:
                    failed = True
                    log.exception("governance pass %s failed; next in %.1fs", name, interval)
                self.metrics.governance_pass(name, time.perf_counter() - started, failed)
                raise_if_cancelled()  # a pass's Redis call may have lost stop()'s cancel
                await asyncio.sleep(interval)

        while True:
            # Returns only when the lock could not be taken or was lost.
            await run_exclusive(self.locks, self.lock_key(name), ttl, self.owner, lead)
            await asyncio.sleep(min(interval, ttl / 3))

    async def stop(self) -> None:
        """Cancel the loops; a pass in progress is cancelled and its lock released."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.locks.close()
