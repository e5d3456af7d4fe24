"""`python forking.py ADDRESS`: a process that uses a SyncClient and a Client, then
forks, as pre-forking servers do after loading the application.

The parent creates two tasks with each client, forks a child with
multiprocessing's "fork" start method, and creates two more with each after the
fork; the child creates two with each of the clients it inherited. Prints what
each created, as JSON. Run in its own process: forking the test runner itself
(its threads, its event loop, the servers it runs) would be unsafe.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import sys
from typing import Any

from asyncflow.client import Client, SyncClient

ADDRESS = sys.argv[1]
sync_client = SyncClient(ADDRESS, timeout=20)
async_client = Client(ADDRESS, timeout=20)


def use(who: str) -> dict[str, Any]:
    """Two tasks through each client; what this process created."""
    created_sync = [sync_client.create("lark", user_id=who).task_id for _ in range(2)]

    async def with_async() -> list[str]:
        return [(await async_client.create("lark", user_id=who)).task_id for _ in range(2)]

    created_async = asyncio.run(with_async())  # a new event loop, as in a fresh process
    return {"pid": os.getpid(), "sync": created_sync, "async": created_async}


def child(results: Any) -> None:
    results.put(use("child"))


if __name__ == "__main__":
    before = use("parent")
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    forked = context.Process(target=child, args=(results,))
    forked.start()
    from_child = results.get(timeout=60)
    forked.join(timeout=60)
    after = use("parent")
    parent = {
        "pid": before["pid"],
        "sync": before["sync"] + after["sync"],
        "async": before["async"] + after["async"],
    }
    print(json.dumps({"parent": parent, "child": {**from_child, "exitcode": forked.exitcode}}))
