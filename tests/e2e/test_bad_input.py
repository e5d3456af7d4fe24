"""Bad input: the right status code, an ErrorInfo naming the field, and no change at all.

Each refused call is checked by tests/hostile.py's World.refused: the store
and schema are the same afterwards and the log holds no ERROR or traceback.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import pytest
from conftest import Running
from hostile import Call, World, seed_world
from rpc import SUCCESS, create, get, hold, register

from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb

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
    "a_lark_" + "1" * 5000,  # over Python's 4300-digit int() limit
]


@pytest.fixture
async def world(
    server: Running, config: Config, mysql_database: str, caplog: pytest.LogCaptureFixture
) -> World:
    return await seed_world(server, config, mysql_database, caplog)


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


def page_token(data: object) -> str:
    """A page token with any content, encoded as the server encodes its own."""
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


OUT_OF_RANGE_PAGE_TOKENS = {
    "pos-2^63": page_token({"t": "lark", "p": 2**63, "i": 0}),
    "pos-10^30": page_token({"t": "lark", "p": 10**30, "i": 0}),
    "pos-over-max": page_token({"t": "lark", "p": 100_000_000, "i": 0}),
    "row-2^63": page_token({"t": "lark", "p": 1, "i": 2**63}),
    "row-10^30": page_token({"t": "lark", "p": 1, "i": 10**30}),
    "both-2^64": page_token({"t": "lark", "p": 2**64, "i": 2**64}),
    "row-float": page_token({"t": "lark", "p": 1, "i": 1e30}),
    "nested": page_token(json.loads("[" * 400 + "]" * 400)),
    "deeply-nested": base64.urlsafe_b64encode(b"[" * 5000).decode(),
    "long": "A" * 100_000,
}


@pytest.mark.parametrize(
    "token", OUT_OF_RANGE_PAGE_TOKENS.values(), ids=OUT_OF_RANGE_PAGE_TOKENS.keys()
)
async def test_page_token_out_of_range(world: World, token: str) -> None:
    await world.refused(
        lambda s: s.ListTasks(pb.ListTasksRequest(task_type="lark", page_token=token)),
        INVALID,
        "page_token",
    )


@pytest.mark.parametrize(
    ("pos", "row_id"), [(1, 2**63 - 1), (99_999_999, 0)], ids=["last-row", "last-table"]
)
async def test_page_token_at_the_bounds_is_accepted(world: World, pos: int, row_id: int) -> None:
    """The largest cursor the store can hold is a valid (empty) place to resume."""
    token = page_token({"t": "lark", "p": pos, "i": row_id})
    page = await world.stub.ListTasks(pb.ListTasksRequest(task_type="lark", page_token=token))
    assert (list(page.tasks), page.next_page_token) == ([], "")


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
    ["wrong", "0" * 32, "' OR '1'='1", "x" * 64],
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
    await world.refused(
        lambda s: s.ExtendLease(
            pb.ExtendLeaseRequest(task_id=world.held.task_id, lease_token=token)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "lease_token",
        "LEASE_LOST",
    )
    assert await get(world.stub, world.held.task_id) == before
    # The rightful holder is unaffected.
    done = await world.stub.SetTask(set_request(world.held.task_id, world.held.lease.token))
    assert done.task.status == pb.TASK_STATUS_SUCCESS


MALFORMED_TOKENS = {
    "latin": "é",
    "mixed": "jeton-é",
    "emoji": "😀" * 8,
    "arabic-digits": "\u0661\u0662",
    "nul": "a\x00b",
    "tab": "tab\there",
    "newline": "line\n",
    "65-chars": "x" * 65,
    "10000-chars": "x" * 10_000,
}


@pytest.mark.parametrize("token", MALFORMED_TOKENS.values(), ids=MALFORMED_TOKENS.keys())
async def test_malformed_lease_token(world: World, token: str) -> None:
    """A string no lease could have: INVALID_ARGUMENT naming lease_token, never INTERNAL."""
    held = world.held
    await world.refused(
        lambda s: s.SetTask(set_request(held.task_id, token, context="hijacked")),
        INVALID,
        "lease_token",
    )
    await world.refused(
        lambda s: s.ExtendLease(pb.ExtendLeaseRequest(task_id=held.task_id, lease_token=token)),
        INVALID,
        "lease_token",
    )
    task = await get(world.stub, held.task_id)
    assert (task.status, task.lease.deadline) == (pb.TASK_STATUS_PROCESSING, held.lease.deadline)
    done = await world.stub.SetTask(set_request(held.task_id, held.lease.token))
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
