"""One test suite for both producer clients: `Producer` gives Client and SyncClient
the same awaitable face, so a test is written once and run against each.

SyncClient calls run in a worker thread (the test's servers run on the test's
event loop, which a blocking call on it would stall); listings come back as
lists. Everything else (arguments, return values, errors) is the client's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from asyncflow.client import Client, SyncClient

KINDS = ["async", "sync"]


class Producer:
    def __init__(self, client: Client | SyncClient) -> None:
        self.client = client
        self.kind = "sync" if isinstance(client, SyncClient) else "async"

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if isinstance(self.client, SyncClient):
                return await asyncio.to_thread(lambda: _listed(method(*args, **kwargs)))
            result = method(*args, **kwargs)
            if isinstance(result, AsyncIterator):
                return [item async for item in result]
            return await result

        return call


def _listed(result: Any) -> Any:
    return list(result) if isinstance(result, Iterator) else result


def open_client(kind: str, address: str, **options: Any) -> Client | SyncClient:
    return Client(address, **options) if kind == "async" else SyncClient(address, **options)


async def close(client: Client | SyncClient) -> None:
    if isinstance(client, SyncClient):
        client.close()
    else:
        await client.close()
