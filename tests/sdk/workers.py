"""A worker that test_worker_process.py runs as a separate process (`asyncflow worker`)."""

from __future__ import annotations

import asyncio
import os

from asyncflow.worker import Job, Worker

worker = Worker(
    os.environ.get("ASYNCFLOW_ADDRESS", "localhost:50051"),
    concurrency=int(os.environ.get("WORKER_CONCURRENCY", "1")),
    prefetch=int(os.environ.get("WORKER_PREFETCH", "0")),
)
WORK_SECONDS = float(os.environ.get("WORKER_SECONDS", "-1"))
"""How long a stage takes; negative: it never finishes."""


@worker.handler("slow")
async def slow(job: Job) -> None:
    print(f"started {job.task_id}", flush=True)
    if WORK_SECONDS < 0:
        await asyncio.Event().wait()
    await asyncio.sleep(WORK_SECONDS)  # the stage's work
    print(f"done {job.task_id}", flush=True)
