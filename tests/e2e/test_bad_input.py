"""Bad input: the right status code, an ErrorInfo naming the field, and no change at all.

Each refused call is bracketed by a snapshot of everything a client can see
(types, counts, every task) and of the schema (the tables of the test database),
which must be identical afterwards: nothing from a request reaches SQL text.
"""

from __future__ import annotations

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
from rpc import SUCCESS, create, get, hold, register

from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

Call = Callable[[pb_grpc.TaskServiceStub], Awaitable[Any]]

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND

BAD_TASK_TYPES = [
    "lark; DROP TABLE t_schedule_cfg",
    "../etc",
    "lark`",
    "Lark",
    "a-b",
    "",
    "a" * 49,
    "t_x_task_1 --",
    "1lark",
    "_lark",
    "lark ",
    "lark\n",
    "lark\x00",
    "läuft",
    "ｌａｒｋ",  # fullwidth letters  # noqa: RUF001
    "lark\u200b",  # zero-width space
]

BAD_TASK_IDS = [
    "",
    "x",
    "a_b",
    "a_lark_0",
    "a_lark_01",
    "a_lark_-1",
    "a_lark_+1",
    "a_lark_1_2",
    "a_lark; drop_1",
    "a_../x_1",
    "a_Lark_1",
    "a b_lark_1",
    "_lark_1",
    "a_lark_",
    "a_lark_\u0661",  # Arabic-Indic digit one: isdigit() but not ASCII
    "a_lark_100000000",
]


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


@dataclass
class World:
    """The server under test, a few seeded tasks, and a way to see every change."""

    running: Running
    config: Config
    mysql_database: str
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
        assert info.metadata["field"] == field
        assert info.reason == (reason or code.name)
        named = field if names is None else names
        assert named in (exc.details() or ""), f"message does not name {named}: {exc.details()}"
        assert await self.snapshot() == before
        return exc


@pytest.fixture
async def world(server: Running, config: Config, mysql_database: str) -> World:
    stub = server.stub
    await register(stub, "lark")
    await register(stub, "swan")
    await create(stub, "lark", context="held one")
    (held,) = await hold(stub, "lark")
    pending = await create(stub, "lark", context="pending one")
    await create(stub, "swan")
    return World(server, config, mysql_database, held, pending)


def set_request(task_id: str, token: str, **fields: Any) -> pb.SetTaskRequest:
    """A SetTask request that is valid apart from what the test changes."""
    if not any(k in fields for k in ("success", "next_stage", "retry", "fail")):
        fields["success"] = SUCCESS
    return pb.SetTaskRequest(task_id=task_id, lease_token=token, **fields)


# -- task types -----------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.CreateTask(pb.CreateTaskRequest(task_type="nosuch")),
        lambda s: s.HoldTasks(pb.HoldTasksRequest(task_type="nosuch")),
        lambda s: s.ListTasks(pb.ListTasksRequest(task_type="nosuch")),
        lambda s: s.CountTasks(pb.CountTasksRequest(task_type="nosuch")),
    ],
    ids=["create", "hold", "list", "count"],
)
async def test_unknown_task_type(world: World, call: Call) -> None:
    await world.refused(call, NOT_FOUND, "task_type", "TASK_TYPE_NOT_FOUND", names="nosuch")


@pytest.mark.parametrize("task_type", BAD_TASK_TYPES)
async def test_invalid_task_type(world: World, task_type: str) -> None:
    calls: list[Call] = [
        lambda s: s.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type=task_type)),
        lambda s: s.CreateTask(pb.CreateTaskRequest(task_type=task_type)),
        lambda s: s.HoldTasks(pb.HoldTasksRequest(task_type=task_type)),
        lambda s: s.ListTasks(pb.ListTasksRequest(task_type=task_type)),
        lambda s: s.CountTasks(pb.CountTasksRequest(task_type=task_type)),
    ]
    for call in calls:
        await world.refused(call, INVALID, "task_type")


async def test_longest_task_type_is_accepted(world: World) -> None:
    name = "a" * 48
    config = await register(world.stub, name)
    assert config.task_type == name
    task = await create(world.stub, name)
    assert task.task_id.endswith(f"_{name}_1")
    assert (await get(world.stub, task.task_id)).task_type == name


# -- task ids -------------------------------------------------------------------


@pytest.mark.parametrize("task_id", BAD_TASK_IDS)
async def test_malformed_task_id(world: World, task_id: str) -> None:
    token = world.held.lease.token
    await world.refused(lambda s: s.GetTask(pb.GetTaskRequest(task_id=task_id)), INVALID, "task_id")
    await world.refused(lambda s: s.SetTask(set_request(task_id, token)), INVALID, "task_id")


@pytest.mark.parametrize(
    "task_id",
    [
        "x_lark_99",  # a position with no table
        "x_lark_1",  # the table exists, the task does not
        "x_nosuch_1",  # a well-formed type that was never registered
        "x_swan_1",  # a type that exists, the key does not
    ],
)
async def test_task_id_that_does_not_exist(world: World, task_id: str) -> None:
    token = world.held.lease.token
    get_call: Call = lambda s: s.GetTask(pb.GetTaskRequest(task_id=task_id))  # noqa: E731
    set_call: Call = lambda s: s.SetTask(set_request(task_id, token))  # noqa: E731
    await world.refused(get_call, NOT_FOUND, "task_id", "TASK_NOT_FOUND", names=task_id)
    await world.refused(set_call, NOT_FOUND, "task_id", "TASK_NOT_FOUND", names=task_id)


async def test_task_id_of_another_type_is_not_found(world: World) -> None:
    """The held lark task's key under the swan type: a foreign id, not a lookup by key."""
    key = world.held.task_id.split("_")[0]
    foreign = f"{key}_swan_1"
    await world.refused(
        lambda s: s.GetTask(pb.GetTaskRequest(task_id=foreign)),
        NOT_FOUND,
        "task_id",
        "TASK_NOT_FOUND",
        names=foreign,
    )


# -- CreateTask fields ----------------------------------------------------------


async def test_priority_out_of_range(world: World) -> None:
    await world.refused(
        lambda s: s.CreateTask(pb.CreateTaskRequest(task_type="lark", priority=31_104_001)),
        INVALID,
        "priority",
    )
    await world.refused(
        lambda s: s.CreateTask(pb.CreateTaskRequest(task_type="lark", priority=2**32 - 1)),
        INVALID,
        "priority",
    )


async def test_highest_priority_is_accepted(world: World) -> None:
    reply = await world.stub.CreateTask(pb.CreateTaskRequest(task_type="lark", priority=31_104_000))
    now = (await world.stub.Ping(pb.PingRequest())).server_time
    assert reply.task.priority == 31_104_000
    assert reply.task.order_time == now - 31_104_000
    (first, *_) = await hold(world.stub, "lark", limit=1)
    assert first.task_id == reply.task.task_id


@pytest.mark.parametrize(
    "context",
    [
        "x" * 8193,
        "é" * 4096 + "a",  # 4097 characters, 8193 bytes
        "€" * 2731,  # 2731 characters, 8193 bytes
        "😀" * 2048 + "a",  # 2049 characters, 8193 bytes
    ],
    ids=["ascii", "2-byte", "3-byte", "4-byte"],
)
async def test_context_over_the_byte_limit(world: World, context: str) -> None:
    assert len(context.encode()) == 8193
    await world.refused(
        lambda s: s.CreateTask(pb.CreateTaskRequest(task_type="lark", context=context)),
        INVALID,
        "context",
    )
    token = world.held.lease.token
    await world.refused(
        lambda s: s.SetTask(set_request(world.held.task_id, token, context=context)),
        INVALID,
        "context",
    )
    assert (await get(world.stub, world.held.task_id)).status == pb.TASK_STATUS_PROCESSING


@pytest.mark.parametrize(
    "context",
    ["x" * 8192, "é" * 4096, "€" * 2730 + "ab", "😀" * 2048, "a" + "€" * 2730 + "b"],
    ids=["ascii", "2-byte", "3-byte", "4-byte", "3-byte-inner"],
)
async def test_context_at_the_byte_limit_is_accepted(world: World, context: str) -> None:
    assert len(context.encode()) == 8192
    task = await create(world.stub, "lark", context=context)
    assert (await get(world.stub, task.task_id)).context == context
    done = await world.stub.SetTask(
        set_request(world.held.task_id, world.held.lease.token, context=context)
    )
    assert done.task.context == context
    assert (await get(world.stub, world.held.task_id)).context == context


@pytest.mark.parametrize(
    "key",
    ["has space", "a_b", "k" * 65, "ключ", "a/b", "a;b", "a.b", "a\x00", "'--"],
)
async def test_bad_idempotency_key(world: World, key: str) -> None:
    await world.refused(
        lambda s: s.CreateTask(pb.CreateTaskRequest(task_type="lark", idempotency_key=key)),
        INVALID,
        "idempotency_key",
    )


async def test_longest_idempotency_key_is_accepted(world: World) -> None:
    key = "K-9" * 21 + "z"
    assert len(key) == 64
    task = await create(world.stub, "lark", idempotency_key=key)
    assert task.task_id == f"{key}_lark_1"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"user_id": "u" * 257}, "user_id"),
        ({"user_id": "u\x00"}, "user_id"),
        ({"task_stage": "s" * 129}, "task_stage"),
        ({"task_stage": "s\x00"}, "task_stage"),
    ],
    ids=["user_id-long", "user_id-nul", "stage-long", "stage-nul"],
)
async def test_bad_create_text(world: World, fields: dict[str, str], field: str) -> None:
    await world.refused(
        lambda s: s.CreateTask(pb.CreateTaskRequest(task_type="lark", **fields)), INVALID, field
    )


# -- ListTasks ------------------------------------------------------------------


@pytest.mark.parametrize("status", [9, 5, -1, 2**31 - 1])
async def test_bad_status_filter(world: World, status: int) -> None:
    exc = await world.refused(
        lambda s: s.ListTasks(pb.ListTasksRequest(task_type="lark", status=status)),  # type: ignore[arg-type]
        INVALID,
        "status",
    )
    assert str(status) in (exc.details() or "")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "!!!",
        "e30",  # base64 of {}
        "eyJ0IjoibGFyayIsInAiOjAsImkiOjB9",  # {"t":"lark","p":0,"i":0}
        "eyJ0IjoibGFyayIsInAiOjEsImkiOi0xfQ",  # {"t":"lark","p":1,"i":-1}
        "eyJ0IjoibGFyayIsInAiOiIxIiwiaSI6MH0",  # {"t":"lark","p":"1","i":0}
        "WzFd",  # [1]
        "bnVsbA",  # null
        "ﬀ",
    ],
)
async def test_bad_page_token(world: World, token: str) -> None:
    await world.refused(
        lambda s: s.ListTasks(pb.ListTasksRequest(task_type="lark", page_token=token)),
        INVALID,
        "page_token",
    )


async def test_page_token_of_another_listing(world: World) -> None:
    await create(world.stub, "swan")
    page = await world.stub.ListTasks(pb.ListTasksRequest(task_type="swan", page_size=1))
    assert page.next_page_token
    await world.refused(
        lambda s: s.ListTasks(
            pb.ListTasksRequest(task_type="lark", page_token=page.next_page_token)
        ),
        INVALID,
        "page_token",
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"user_id": "u" * 257}, "user_id"), ({"task_stage": "s" * 129}, "task_stage")],
    ids=["user_id", "task_stage"],
)
async def test_bad_list_filter_text(world: World, fields: dict[str, str], field: str) -> None:
    await world.refused(
        lambda s: s.ListTasks(pb.ListTasksRequest(task_type="lark", **fields)), INVALID, field
    )


# -- SetTask --------------------------------------------------------------------


async def test_set_task_without_outcome(world: World) -> None:
    request = pb.SetTaskRequest(task_id=world.held.task_id, lease_token=world.held.lease.token)
    await world.refused(lambda s: s.SetTask(request), INVALID, "outcome")


async def test_set_task_without_lease_token(world: World) -> None:
    await world.refused(
        lambda s: s.SetTask(set_request(world.held.task_id, "")), INVALID, "lease_token"
    )


@pytest.mark.parametrize(
    "token",
    ["wrong", "0" * 32, "' OR '1'='1", "x" * 10_000],
)
async def test_set_task_with_wrong_token(world: World, token: str) -> None:
    before = await get(world.stub, world.held.task_id)
    exc = await world.refused(
        lambda s: s.SetTask(set_request(world.held.task_id, token, context="hijacked")),
        grpc.StatusCode.FAILED_PRECONDITION,
        "lease_token",
        "LEASE_LOST",
    )
    assert world.held.lease.token not in (exc.details() or "")  # the real token never leaks
    assert await get(world.stub, world.held.task_id) == before
    # The rightful holder is unaffected.
    done = await world.stub.SetTask(set_request(world.held.task_id, world.held.lease.token))
    assert done.task.status == pb.TASK_STATUS_SUCCESS


async def test_set_task_on_a_pending_task(world: World) -> None:
    await world.refused(
        lambda s: s.SetTask(set_request(world.pending.task_id, world.held.lease.token)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "task_id",
        "TASK_NOT_PROCESSING",
        names=world.pending.task_id,
    )


@pytest.mark.parametrize(
    ("outcome", "field"),
    [
        (
            {"next_stage": pb.SetTaskRequest.NextStage(task_stage="s" * 129)},
            "next_stage.task_stage",
        ),
        (
            {"next_stage": pb.SetTaskRequest.NextStage(task_stage="s\x00")},
            "next_stage.task_stage",
        ),
        ({"retry": pb.SetTaskRequest.Retry(error_message="e" * 4097)}, "retry.error_message"),
        (
            {"retry": pb.SetTaskRequest.Retry(delay_seconds=31_104_001)},
            "retry.delay_seconds",
        ),
        ({"fail": pb.SetTaskRequest.Fail(error_message="e" * 4097)}, "fail.error_message"),
    ],
    ids=["stage-long", "stage-nul", "retry-error", "retry-delay", "fail-error"],
)
async def test_bad_outcome_fields(world: World, outcome: dict[str, Any], field: str) -> None:
    await world.refused(
        lambda s: s.SetTask(set_request(world.held.task_id, world.held.lease.token, **outcome)),
        INVALID,
        field,
    )


# -- RegisterTaskType -----------------------------------------------------------


BAD_SETTINGS: list[tuple[dict[str, int], str]] = [
    ({"schedule_limit": 0}, "schedule_limit"),
    ({"schedule_limit": 2001}, "schedule_limit"),
    ({"schedule_interval_seconds": 0}, "schedule_interval_seconds"),
    ({"schedule_interval_seconds": 86_401}, "schedule_interval_seconds"),
    ({"max_processing_time_seconds": 0}, "max_processing_time_seconds"),
    ({"max_processing_time_seconds": 7 * 86_400 + 1}, "max_processing_time_seconds"),
    ({"max_retry_num": 1001}, "max_retry_num"),
    ({"max_retry_num": 2**32 - 1}, "max_retry_num"),
    ({"retry_interval_seconds": 0}, "retry_interval_seconds"),
    ({"retry_interval_seconds": 30 * 86_400 + 1}, "retry_interval_seconds"),
    ({"max_retry_interval_seconds": 0}, "max_retry_interval_seconds"),
    ({"max_retry_interval_seconds": 30 * 86_400 + 1}, "max_retry_interval_seconds"),
    ({"retry_strategy": 7}, "retry_strategy"),
    ({"schedule_limit": 5, "max_retry_num": 1001}, "max_retry_num"),
]


@pytest.mark.parametrize(
    ("settings", "field"),
    BAD_SETTINGS,
    ids=["-".join(f"{k}={v}" for k, v in settings.items()) for settings, _ in BAD_SETTINGS],
)
@pytest.mark.parametrize("task_type", ["lark", "fresh"], ids=["existing", "new"])
async def test_register_out_of_range(
    world: World, settings: dict[str, int], field: str, task_type: str
) -> None:
    exc = await world.refused(
        lambda s: s.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type=task_type, **settings)),
        INVALID,
        field,
    )
    assert str(settings[field]) in (exc.details() or "")


async def test_register_bounds_are_accepted(world: World) -> None:
    config = await register(
        world.stub,
        "bounds",
        schedule_limit=2000,
        schedule_interval_seconds=86_400,
        max_processing_time_seconds=7 * 86_400,
        max_retry_num=1000,
        retry_interval_seconds=30 * 86_400,
        max_retry_interval_seconds=30 * 86_400,
    )
    assert (config.schedule_limit, config.max_retry_num) == (2000, 1000)
    low = await register(
        world.stub,
        "bounds",
        schedule_limit=1,
        schedule_interval_seconds=1,
        max_processing_time_seconds=1,
        max_retry_num=0,
        retry_interval_seconds=1,
        max_retry_interval_seconds=1,
    )
    assert (low.schedule_limit, low.max_retry_num, low.retry_interval_seconds) == (1, 0, 1)


# -- nothing leaked into the store ----------------------------------------------


async def test_bad_input_left_the_store_usable(world: World) -> None:
    """After a burst of hostile calls the server still does its job."""
    for task_type in BAD_TASK_TYPES:
        with pytest.raises(grpc.aio.AioRpcError):
            await world.stub.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type=task_type))
    for task_id in BAD_TASK_IDS:
        with pytest.raises(grpc.aio.AioRpcError):
            await world.stub.GetTask(pb.GetTaskRequest(task_id=task_id))
    types = (await world.stub.ListTaskTypes(pb.ListTaskTypesRequest())).task_types
    assert [t.task_type for t in types] == ["lark", "swan"]
    assert "t_schedule_cfg" in world.tables()
    (next_task,) = await hold(world.stub, "lark")
    assert next_task.task_id == world.pending.task_id
