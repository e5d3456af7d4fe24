"""Helpers for the hostile-input tests: a seeded server, store snapshots, raw calls.

Each refused call is bracketed by a snapshot of everything a client can see
(types, counts, every task) and of the schema (the tables of the test database),
which must be identical afterwards: nothing from a request reaches SQL text.
The captured log must stay quiet too: a client can never make the server log
an ERROR or a traceback.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pymysql
import pytest
from conftest import MYSQL, Running
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rpc import create, hold, register

from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

Call = Callable[[pb_grpc.TaskServiceStub], Awaitable[Any]]
SERVICE = "/asyncflow.v1.TaskService/"


def error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The google.rpc.ErrorInfo detail of a failed call (asserts there is exactly one)."""
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None, f"no rich status on {exc.code()}: {exc.details()}"
    assert status.code == exc.code().value[0]
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert len(infos) == 1, f"expected one ErrorInfo, got {status.details}"
    return infos[0]


SERVER_LOGGERS = ("asyncflow", "grpc")
"""Where the server and grpc log. asyncio's own logger is left out: it also
reports client objects of earlier tests that the garbage collector finalizes
at any moment, which would make these checks flaky."""


def assert_quiet_log(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing above WARNING and no traceback, whatever the client sent."""
    loud = [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.split(".")[0] in SERVER_LOGGERS
        and (r.levelno > logging.WARNING or r.exc_info or r.stack_info)
    ]
    assert not loud, f"the server logged {loud}"


@dataclass
class World:
    """The server under test, a few seeded tasks, and a way to see every change."""

    running: Running
    config: Config
    mysql_database: str
    caplog: pytest.LogCaptureFixture
    held: pb.Task
    pending: pb.Task

    @property
    def stub(self) -> pb_grpc.TaskServiceStub:
        return self.running.stub

    def tables(self) -> list[str]:
        if self.config.store.backend == "mysql":
            conn = pymysql.connect(**MYSQL)
            try:
                cur = conn.cursor()
                cur.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
                    " ORDER BY table_name",
                    (self.mysql_database,),
                )
                return [row[0] for row in cur.fetchall()]
            finally:
                conn.close()
        db = sqlite3.connect(self.config.store.sqlite_path)
        try:
            rows = db.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall()
            return [row[0] for row in rows]
        finally:
            db.close()

    async def snapshot(self) -> tuple[object, ...]:
        types = (await self.stub.ListTaskTypes(pb.ListTaskTypesRequest())).task_types
        per_type = []
        for config in types:
            counted = await self.stub.CountTasks(pb.CountTasksRequest(task_type=config.task_type))
            listed = await self.stub.ListTasks(
                pb.ListTasksRequest(task_type=config.task_type, page_size=1000)
            )
            per_type.append((counted, list(listed.tasks)))
        return list(types), per_type, self.tables()

    async def refused(
        self,
        call: Call,
        code: grpc.StatusCode,
        field: str,
        reason: str | None = None,
        *,
        names: str | None = None,
    ) -> grpc.aio.AioRpcError:
        """Run `call`, expect it refused with `code` naming `field`, and nothing changed.

        The message must contain `names`: the field by default, the offending
        value for NOT_FOUND-like errors (a message names what was not found).
        """
        before = await self.snapshot()
        assert "t_schedule_cfg" in before[2]
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(self.stub)
        exc = raised.value
        assert exc.code() == code, exc.details()
        info = error_info(exc)
        assert info.domain == "asyncflow"
        assert info.metadata.get("field", "") == field
        assert info.reason == (reason or code.name)
        named = field if names is None else names
        assert named in (exc.details() or ""), f"message does not name {named}: {exc.details()}"
        assert await self.snapshot() == before
        assert_quiet_log(self.caplog)
        return exc

    async def raw_unary(self, method: str, body: bytes) -> bytes:
        """Call a TaskService method with `body` as the request, bytes as they are."""
        call = self.running.channel.unary_unary(SERVICE + method)
        reply: bytes = await call(body)
        return reply


async def seed_world(
    server: Running, config: Config, mysql_database: str, caplog: pytest.LogCaptureFixture
) -> World:
    """Types lark and swan; one lark task held (unary), one lark and one swan pending."""
    stub = server.stub
    await register(stub, "lark")
    await register(stub, "swan")
    await create(stub, "lark", context="held one")
    (held,) = await hold(stub, "lark")
    pending = await create(stub, "lark", context="pending one")
    await create(stub, "swan")
    return World(server, config, mysql_database, caplog, held, pending)
