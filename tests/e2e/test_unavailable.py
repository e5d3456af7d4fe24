"""A database that cannot serve gives UNAVAILABLE, never INTERNAL, on every backend.

SQLite: another process holds the file's write lock (BEGIN EXCLUSIVE) past the
server's short busy_timeout. MariaDB: the server reaches the real MariaDB
through a TCP proxy that the test cuts (open connections dropped, new ones
refused), then restores; the shared MariaDB itself is never touched (see
tests/outage.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import StartServer
from outage import Outage, database_outage
from rpc import counts, create, error_reason, hold, register
from streams import RawWorker

from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb

UNAVAILABLE = (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")


@pytest.fixture
async def outage(backend: str, config: Config) -> AsyncIterator[tuple[Config, Outage]]:
    async with database_outage(backend, config) as prepared:
        yield prepared


async def test_store_outage_is_unavailable_on_unary_calls_and_streams(
    start_server: StartServer, outage: tuple[Config, Outage]
) -> None:
    config, database_down = outage
    running = await start_server(config)
    stub = running.stub
    await register(stub)
    for _ in range(2):
        await create(stub)
    worker = RawWorker(stub)
    try:
        await worker.subscribe("lark", window=2)
        await worker.until(tasks=2)
        async with database_down():
            for call in (create(stub), hold(stub)):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call
                assert error_reason(refused.value)[:2] == UNAVAILABLE
            # A stream whose report cannot be written ends with UNAVAILABLE: the
            # worker reconnects and sends the report again.
            await worker.report_success(*worker.tasks)
            ended = await worker.ended()
            assert ended is not None
            assert error_reason(ended)[:2] == UNAVAILABLE
        # Back: the refused calls changed nothing, and the server serves again.
        await create(stub)
        assert await counts(stub) == {
            pb.TASK_STATUS_PENDING: 1,
            pb.TASK_STATUS_PROCESSING: 2,
            pb.TASK_STATUS_SUCCESS: 0,
            pb.TASK_STATUS_FAILED: 0,
            pb.TASK_STATUS_CANCELLED: 0,
        }
    finally:
        worker.cancel()
