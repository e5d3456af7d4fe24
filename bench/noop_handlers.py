"""No-op handlers for the drain benchmark's `asyncflow worker` processes."""

from __future__ import annotations

from asyncflow.worker import Job


async def noop(job: Job) -> None:
    return None


handlers = {"drain": noop}
