"""A two-stage task in the spirit of the original's `lark` example.

    sendmsg  send a message (it fails now and then: retried with back-off),
             then hand the message id to the next stage through the context
    record   record the delivery; the task is done

Run it against the default server, in three terminals:

    make serve
    .venv/bin/asyncflow worker examples/lark.py:worker
    .venv/bin/python examples/lark.py 20      # create 20 tasks, watch them finish
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys

from asyncflow.client import Client, TaskStatus
from asyncflow.worker import Done, Job, RetryLater, RunNext, Worker

ADDRESS = os.environ.get("ASYNCFLOW_ADDRESS", "localhost:50051")
worker = Worker(ADDRESS, concurrency=8)


@worker.handler("lark")
async def lark(job: Job) -> RunNext | Done:
    context = json.loads(job.context or "{}")
    if job.stage == "sendmsg":
        if random.random() < 0.3:  # a flaky downstream: try again shortly
            raise RetryLater(f"mail server busy (attempt {job.attempt})", delay=1)
        context["message_id"] = f"msg-{job.task_id[:8]}"
        return RunNext("record", context=json.dumps(context))
    if job.stage == "record":
        context["recorded"] = True
        return Done(context=json.dumps(context))
    raise ValueError(f"unknown stage {job.stage!r}")


async def main(count: int) -> None:
    async with Client(ADDRESS) as client:
        await client.register_type("lark", max_retry_num=5, retry_interval=1)
        created = [
            await client.create("lark", stage="sendmsg", context=json.dumps({"to": f"user{i}"}))
            for i in range(count)
        ]
        print(f"created {len(created)} lark tasks; waiting for the worker...")
        while True:
            tasks = [await client.get(t.task_id) for t in created]
            done = [t for t in tasks if t.status in (TaskStatus.SUCCESS, TaskStatus.FAILED)]
            print(f"  {len(done)}/{count} finished", flush=True)
            if len(done) == count:
                break
            await asyncio.sleep(1)
        for task in tasks[:3]:
            print(f"{task.task_id}: {task.status.name} stage={task.stage} context={task.context}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
