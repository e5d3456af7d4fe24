"""Governor.stop() ends every loop even when a lock call loses the cancellation.

redis-py (8.1) can return from a command normally although the task running
it was cancelled meanwhile (seen as `asyncio.current_task().cancelling()` still
raised afterwards); a governance loop that went on would keep stop(), and so a
server's graceful shutdown, waiting forever, and lead loops after its stop.
"""

from __future__ import annotations

import asyncio

import pytest

from asyncflow.core.governance import Governance, GovernanceSettings
from asyncflow.lock import LocalLock, run_exclusive
from asyncflow.server.governor import Governor


class CancelLosingLock(LocalLock):
    """acquire() waits, and returns False when cancelled instead of raising."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()

    async def acquire(self, key: str, token: str, ttl: float) -> bool:
        self.waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return False  # what the library did: the cancellation is gone
        return False


async def test_run_exclusive_raises_a_cancellation_the_lock_call_lost() -> None:
    lock = CancelLosingLock()
    running = asyncio.create_task(run_exclusive(lock, "k", 1.0, "me", asyncio.sleep))
    await lock.waiting.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, timeout=10)


async def test_governor_stop_returns_although_a_lock_call_lost_the_cancel() -> None:
    lock = CancelLosingLock()
    settings = GovernanceSettings(long_process_interval=0.01, split_interval=0.01,
                                  move_interval=0.01)  # fmt: skip
    governance = Governance(None, None, None, settings)  # type: ignore[arg-type]  # never leads
    governor = Governor(governance, lock, "test:")
    governor.start()
    await lock.waiting.wait()
    await asyncio.wait_for(governor.stop(), timeout=10)
