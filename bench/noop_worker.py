"""No-op handlers for `asyncflow worker bench.noop_worker:handlers` (the drain benchmarks).

The task types come from BENCH_NOOP_TYPES (comma-separated), so one module
serves every benchmark's type.
"""

from __future__ import annotations

import os

from asyncflow.worker import Job


async def noop(job: Job) -> None:
    """Returning is the success report: the task's whole cost is the SDK's and the server's."""


handlers = {name: noop for name in os.environ.get("BENCH_NOOP_TYPES", "drain").split(",") if name}
