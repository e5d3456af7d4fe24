"""Every TaskService RPC end to end, through a real server on both backends."""

from __future__ import annotations

import json
import re

import grpc
import pytest
from conftest import Running, StartServer
from rpc import SUCCESS, counts, create, error_reason, fail, get, hold, next_stage, register
from rpc import report as set_task
from rpc import retry as retry_outcome

from asyncflow.clock import ManualClock
from asyncflow.config import Config
from asyncflow.core.validate import Limits
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
STATUSES = [
    pb.TASK_STATUS_PENDING,
    pb.TASK_STATUS_PROCESSING,
    pb.TASK_STATUS_SUCCESS,
    pb.TASK_STATUS_FAILED,
]


async def list_page(
    stub: pb_grpc.TaskServiceStub, task_type: str = "lark", **fields: object
) -> pb.ListTasksResponse:
    return await stub.ListTasks(pb.ListTasksRequest(task_type=task_type, **fields))  # type: ignore[arg-type]


async def list_all(
    stub: pb_grpc.TaskServiceStub, task_type: str = "lark", **fields: object
) -> list[pb.Task]:
    """Follow next_page_token to the end; fail on a token that repeats (a loop)."""
    tasks: list[pb.Task] = []
    seen_tokens: set[str] = set()
    token = ""
    while True:
        page = await list_page(stub, task_type, page_token=token, **fields)
        tasks.extend(page.tasks)
        token = page.next_page_token
        if not token:
            return tasks
        assert token not in seen_tokens, "page_token repeated: the listing loops"
        seen_tokens.add(token)


def ids(tasks: list[pb.Task]) -> list[str]:
    return [t.task_id for t in tasks]


def last_log(task: pb.Task) -> dict[str, object]:
    entry = json.loads(task.schedule_log)["last"]
    assert isinstance(entry, dict)
    return entry


# -- RegisterTaskType -----------------------------------------------------------


async def test_register_new_type_gets_defaults(
    stub: pb_grpc.TaskServiceStub, clock: ManualClock
) -> None:
    config = await register(stub, "lark")
    assert config == pb.TaskTypeConfig(
        task_type="lark",
        schedule_limit=100,
        schedule_interval_seconds=10,
        max_processing_time_seconds=30,
        max_retry_num=3,
        retry_strategy=pb.RETRY_STRATEGY_PROGRESSIVE,
        retry_interval_seconds=5,
        max_retry_interval_seconds=30,
        begin_pos=1,
        end_pos=1,
        data_begin_pos=1,
        create_time=clock.now(),
        modify_time=clock.now(),
    )


async def test_register_with_every_setting(stub: pb_grpc.TaskServiceStub) -> None:
    config = await register(
        stub,
        "lark",
        schedule_limit=7,
        schedule_interval_seconds=2,
        max_processing_time_seconds=600,
        max_retry_num=0,
        retry_strategy=pb.RETRY_STRATEGY_UNIFORM,
        retry_interval_seconds=11,
        max_retry_interval_seconds=99,
    )
    assert (
        config.schedule_limit,
        config.schedule_interval_seconds,
        config.max_processing_time_seconds,
        config.max_retry_num,
        config.retry_strategy,
        config.retry_interval_seconds,
        config.max_retry_interval_seconds,
    ) == (7, 2, 600, 0, pb.RETRY_STRATEGY_UNIFORM, 11, 99)


async def test_register_update_keeps_unset_fields(
    stub: pb_grpc.TaskServiceStub, clock: ManualClock
) -> None:
    first = await register(
        stub,
        "lark",
        schedule_limit=7,
        retry_strategy=pb.RETRY_STRATEGY_UNIFORM,
        retry_interval_seconds=11,
    )
    clock.advance(100)
    second = await register(stub, "lark", max_retry_num=9)
    assert second.max_retry_num == 9
    # Everything not given keeps its value, including the (enum) strategy.
    assert second.schedule_limit == 7
    assert second.retry_strategy == pb.RETRY_STRATEGY_UNIFORM
    assert second.retry_interval_seconds == 11
    assert second.max_processing_time_seconds == first.max_processing_time_seconds
    assert second.create_time == first.create_time
    assert (second.begin_pos, second.end_pos) == (1, 1)
    # An explicit zero is a value, not "unset".
    third = await register(stub, "lark", max_retry_num=0)
    assert (third.max_retry_num, third.schedule_limit) == (0, 7)


async def test_register_twice_is_idempotent(
    stub: pb_grpc.TaskServiceStub, server: Running, clock: ManualClock
) -> None:
    first = await register(stub, "lark", schedule_limit=5)
    await create(stub, "lark")
    # Roll the type onto a second table: re-registering must not reset positions.
    store = server.server.core.store
    stored = await store.type_get("lark")
    assert stored is not None
    assert await store.pos_split(stored, clock.now())
    rolled = (await stub.ListTaskTypes(pb.ListTaskTypesRequest())).task_types[0]
    assert (rolled.begin_pos, rolled.end_pos) == (1, 2)

    again = await register(stub, "lark", schedule_limit=5)
    assert (again.begin_pos, again.end_pos) == (1, 2)
    assert again.create_time == first.create_time
    expected = pb.TaskTypeConfig()
    expected.CopyFrom(first)
    expected.end_pos = 2
    assert again == expected  # same settings, same times, positions untouched
    listed = (await stub.ListTaskTypes(pb.ListTaskTypesRequest())).task_types
    assert [t.task_type for t in listed] == ["lark"]
    assert (await counts(stub))[pb.TASK_STATUS_PENDING] == 1


# -- CreateTask -----------------------------------------------------------------


async def test_create_returns_pending_task(
    stub: pb_grpc.TaskServiceStub, clock: ManualClock
) -> None:
    await register(stub, "lark", max_retry_num=4)
    reply = await stub.CreateTask(
        pb.CreateTaskRequest(
            task_type="lark",
            user_id="user-1",
            task_stage="fetch",
            context='{"url": "https://example.com"}',
            priority=120,
        )
    )
    task = reply.task
    assert reply.created
    assert re.fullmatch(rf"{UUID}_lark_1", task.task_id), task.task_id
    assert task.status == pb.TASK_STATUS_PENDING
    assert task.order_time == clock.now() - 120
    assert (task.task_type, task.user_id, task.task_stage) == ("lark", "user-1", "fetch")
    assert task.context == '{"url": "https://example.com"}'
    assert (task.priority, task.crt_retry_num, task.max_retry_num) == (120, 0, 4)
    assert task.create_time == task.modify_time == clock.now()
    assert not task.HasField("lease")
    assert await get(stub, task.task_id) == task


async def test_create_without_priority_is_due_now(
    stub: pb_grpc.TaskServiceStub, clock: ManualClock
) -> None:
    await register(stub, "lark")
    task = await create(stub, "lark")
    assert (task.priority, task.order_time) == (0, clock.now())


async def test_task_id_embeds_key_type_and_position(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "video_encode_v2")
    keyed = await create(stub, "video_encode_v2", idempotency_key="Order-42")
    assert keyed.task_id == "Order-42_video-encode-v2_1"
    generated = await create(stub, "video_encode_v2")
    assert re.fullmatch(rf"{UUID}_video-encode-v2_1", generated.task_id), generated.task_id
    assert (await get(stub, keyed.task_id)).task_type == "video_encode_v2"


async def test_create_with_idempotency_key_returns_the_existing_task(
    stub: pb_grpc.TaskServiceStub, clock: ManualClock
) -> None:
    await register(stub, "lark")
    first = await stub.CreateTask(
        pb.CreateTaskRequest(task_type="lark", idempotency_key="k-1", context="first")
    )
    assert first.created
    clock.advance(10)
    second = await stub.CreateTask(
        pb.CreateTaskRequest(task_type="lark", idempotency_key="k-1", context="second", priority=50)
    )
    assert not second.created
    assert second.task == first.task  # the first call's task, not the second's fields
    reply = await stub.CountTasks(pb.CountTasksRequest(task_type="lark"))
    assert reply.total == 1
    assert ids(await list_all(stub)) == [first.task.task_id]


async def test_idempotency_key_naming_an_existing_generated_id(
    stub: pb_grpc.TaskServiceStub,
) -> None:
    """A key equal to the key part of an existing task id names that task: no duplicate,
    and no INTERNAL error from the task table's unique index."""
    await register(stub, "lark")
    generated = await create(stub, "lark")
    key = generated.task_id.split("_")[0]
    reply = await stub.CreateTask(pb.CreateTaskRequest(task_type="lark", idempotency_key=key))
    assert not reply.created
    assert reply.task.task_id == generated.task_id
    assert (await stub.CountTasks(pb.CountTasksRequest(task_type="lark"))).total == 1


async def test_idempotency_key_is_per_type(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark")
    await register(stub, "swan")
    a = await stub.CreateTask(pb.CreateTaskRequest(task_type="lark", idempotency_key="same"))
    b = await stub.CreateTask(pb.CreateTaskRequest(task_type="swan", idempotency_key="same"))
    assert a.created
    assert b.created
    assert (a.task.task_id, b.task.task_id) == ("same_lark_1", "same_swan_1")


async def test_idempotency_key_still_matches_after_the_task_finished(
    stub: pb_grpc.TaskServiceStub,
) -> None:
    await register(stub, "lark")
    task = await create(stub, "lark", idempotency_key="once")
    (held,) = await hold(stub)
    await set_task(stub, held, SUCCESS)
    again = await stub.CreateTask(pb.CreateTaskRequest(task_type="lark", idempotency_key="once"))
    assert not again.created
    assert again.task.task_id == task.task_id
    assert again.task.status == pb.TASK_STATUS_SUCCESS
    assert (await stub.CountTasks(pb.CountTasksRequest(task_type="lark"))).total == 1


# -- HoldTasks ------------------------------------------------------------------


async def test_hold_leases_due_tasks(stub: pb_grpc.TaskServiceStub, clock: ManualClock) -> None:
    await register(stub, "lark", max_processing_time_seconds=45)
    created = [await create(stub, "lark", user_id=f"u{i}") for i in range(3)]
    held = await hold(stub)
    assert sorted(ids(held)) == sorted(ids(created))
    for task in held:
        assert task.status == pb.TASK_STATUS_PROCESSING
        assert task.lease.token
        assert task.lease.attempt == 1
        assert task.lease.deadline == clock.now() + 45
    assert await hold(stub) == []  # nothing is handed out twice
    assert (await counts(stub))[pb.TASK_STATUS_PROCESSING] == 3


async def test_hold_is_oldest_first_with_priority(
    stub: pb_grpc.TaskServiceStub, clock: ManualClock
) -> None:
    await register(stub, "lark")
    old = await create(stub, "lark")
    clock.advance(10)
    newer = await create(stub, "lark")
    clock.advance(10)
    urgent = await create(stub, "lark", priority=600)
    held = await hold(stub, limit=3)
    assert ids(held) == [urgent.task_id, old.task_id, newer.task_id]


async def test_hold_limit_zero_means_schedule_limit(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark", schedule_limit=3)
    for _ in range(5):
        await create(stub, "lark")
    assert len(await hold(stub, limit=0)) == 3
    assert len(await hold(stub, limit=0)) == 2


async def test_hold_limit_below_schedule_limit_is_honoured(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark", schedule_limit=3)
    for _ in range(5):
        await create(stub, "lark")
    assert len(await hold(stub, limit=1)) == 1
    assert len(await hold(stub, limit=2)) == 2


async def test_hold_limit_is_the_callers_up_to_the_server_max(
    start_server: StartServer, config: Config
) -> None:
    """The contract: 0 means schedule_limit; a larger limit than schedule_limit is the
    caller's choice, clamped only to the server's limits.max_hold_limit."""
    server = await start_server(config, limits=Limits(max_hold_limit=4))
    stub = server.stub
    await register(stub, "lark", schedule_limit=3)
    for _ in range(6):
        await create(stub, "lark")
    assert len(await hold(stub)) == 3
    assert len(await hold(stub, limit=100)) == 3  # 4 by the server max, 3 were left


async def test_hold_skips_tasks_in_back_off(
    stub: pb_grpc.TaskServiceStub, clock: ManualClock
) -> None:
    await register(stub, "lark")
    task = await create(stub, "lark")
    (held,) = await hold(stub)
    waiting = await set_task(stub, held, retry_outcome("later", delay=60))
    assert waiting.order_time == clock.now() + 60
    assert await hold(stub) == []
    clock.advance(59)
    assert await hold(stub) == []
    clock.advance(1)
    (again,) = await hold(stub)
    assert again.task_id == task.task_id
    assert (again.lease.attempt, again.crt_retry_num) == (2, 1)
    assert again.lease.token != held.lease.token


async def test_hold_of_an_empty_type_returns_nothing(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark")
    assert await hold(stub) == []


# -- SetTask --------------------------------------------------------------------


async def test_set_task_success(stub: pb_grpc.TaskServiceStub, clock: ManualClock) -> None:
    await register(stub, "lark")
    await create(stub, "lark", context="in")
    (held,) = await hold(stub)
    clock.advance(5)
    done = await set_task(stub, held, SUCCESS, context="out")
    assert done.status == pb.TASK_STATUS_SUCCESS
    assert done.context == "out"
    assert done.modify_time == clock.now()
    assert not done.HasField("lease")
    assert last_log(done)["outcome"] == "success"
    assert await get(stub, held.task_id) == done


async def test_set_task_success_without_context_keeps_it(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark")
    await create(stub, "lark", context="keep me")
    (held,) = await hold(stub)
    done = await set_task(stub, held, SUCCESS)
    assert done.context == "keep me"


async def test_set_task_next_stage_with_context(
    stub: pb_grpc.TaskServiceStub, clock: ManualClock
) -> None:
    await register(stub, "lark")
    await create(stub, "lark", task_stage="fetch", context="0", priority=30)
    (held,) = await hold(stub)
    clock.advance(7)
    moved = await set_task(stub, held, next_stage("parse"), context='{"step": 1}')
    assert moved.status == pb.TASK_STATUS_PENDING
    assert (moved.task_stage, moved.context, moved.crt_retry_num) == ("parse", '{"step": 1}', 0)
    assert moved.order_time == clock.now() - 30
    assert not moved.HasField("lease")
    assert last_log(moved)["stage"] == "fetch"
    (again,) = await hold(stub)
    assert (again.task_stage, again.context, again.lease.attempt) == ("parse", '{"step": 1}', 2)


async def test_set_task_retry_uses_the_type_back_off(
    stub: pb_grpc.TaskServiceStub, clock: ManualClock
) -> None:
    await register(
        stub,
        "lark",
        max_retry_num=5,
        retry_strategy=pb.RETRY_STRATEGY_PROGRESSIVE,
        retry_interval_seconds=5,
        max_retry_interval_seconds=30,
    )
    await create(stub, "lark", task_stage="s")
    delays = []
    for expected_retries in (1, 2, 3):
        (held,) = await hold(stub)
        back = await set_task(stub, held, retry_outcome(f"boom {expected_retries}"))
        assert back.status == pb.TASK_STATUS_PENDING
        assert back.crt_retry_num == expected_retries
        assert back.task_stage == "s"
        assert last_log(back)["error"] == f"boom {expected_retries}"
        delays.append(back.order_time - clock.now())
        clock.advance(back.order_time - clock.now())
    assert delays == [5, 10, 20]


async def test_set_task_retry_with_explicit_delay(
    stub: pb_grpc.TaskServiceStub, clock: ManualClock
) -> None:
    await register(stub, "lark", retry_strategy=pb.RETRY_STRATEGY_UNIFORM)
    await create(stub, "lark", context="a")
    (held,) = await hold(stub)
    back = await set_task(stub, held, retry_outcome("slow down", delay=300), context="b")
    assert (back.status, back.crt_retry_num, back.context) == (pb.TASK_STATUS_PENDING, 1, "b")
    assert back.order_time == clock.now() + 300


async def test_set_task_retry_exhausted_fails(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark", max_retry_num=0)
    await create(stub, "lark")
    (held,) = await hold(stub)
    failed = await set_task(stub, held, retry_outcome("again?"))
    assert failed.status == pb.TASK_STATUS_FAILED
    assert failed.crt_retry_num == 0


async def test_set_task_fail(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark")
    await create(stub, "lark", context="c")
    (held,) = await hold(stub)
    failed = await set_task(stub, held, fail("bad input file"))
    assert failed.status == pb.TASK_STATUS_FAILED
    assert failed.context == "c"
    assert last_log(failed)["outcome"] == "fail"
    assert last_log(failed)["error"] == "bad input file"
    assert (await counts(stub))[pb.TASK_STATUS_FAILED] == 1


@pytest.mark.parametrize(
    "first",
    [SUCCESS, fail("no")],
    ids=["success", "fail"],
)
async def test_terminal_states_are_sticky(
    stub: pb_grpc.TaskServiceStub, first: pb.SetTaskRequest.Success | pb.SetTaskRequest.Fail
) -> None:
    await register(stub, "lark")
    await create(stub, "lark")
    (held,) = await hold(stub)
    final = await set_task(stub, held, first)
    for outcome in (SUCCESS, fail(), retry_outcome(), next_stage("again")):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await set_task(stub, held, outcome, context="late")
        code, reason, field = error_reason(refused.value)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert (reason, field) == ("TASK_NOT_PROCESSING", "task_id")
    assert await get(stub, held.task_id) == final
    assert await hold(stub) == []


# -- GetTask --------------------------------------------------------------------


async def test_get_task_hides_the_lease_token(
    stub: pb_grpc.TaskServiceStub, clock: ManualClock
) -> None:
    await register(stub, "lark", max_processing_time_seconds=20)
    task = await create(stub, "lark")
    (held,) = await hold(stub)
    assert held.lease.token
    got = await get(stub, task.task_id)
    assert got.status == pb.TASK_STATUS_PROCESSING
    assert got.HasField("lease")
    assert got.lease.token == ""
    assert (got.lease.attempt, got.lease.deadline) == (1, clock.now() + 20)
    listed = await list_all(stub)
    assert [t.lease.token for t in listed] == [""]
    assert listed[0].lease.attempt == 1


async def test_get_task_reads_what_was_written(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark")
    task = await create(stub, "lark", user_id="u", context="x")
    assert await get(stub, task.task_id) == task
    (held,) = await hold(stub)
    assert (await get(stub, task.task_id)).status == pb.TASK_STATUS_PROCESSING
    moved = await set_task(stub, held, next_stage("two"))
    assert await get(stub, task.task_id) == moved


# -- ListTasks ------------------------------------------------------------------


async def test_list_tasks_filters(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark")
    await register(stub, "swan")
    await create(stub, "swan", user_id="alice", task_stage="a")  # another type: never listed
    tasks = {
        (user, stage): await create(stub, "lark", user_id=user, task_stage=stage)
        for user in ("alice", "bob")
        for stage in ("a", "b")
    }
    held = await hold(stub, "lark", limit=1)
    assert ids(held) == [tasks["alice", "a"].task_id]

    everything = await list_all(stub)
    assert sorted(ids(everything)) == sorted(t.task_id for t in tasks.values())
    assert {t.task_type for t in everything} == {"lark"}

    processing = await list_all(stub, status=pb.TASK_STATUS_PROCESSING)
    assert ids(processing) == [tasks["alice", "a"].task_id]
    pending = await list_all(stub, status=pb.TASK_STATUS_PENDING)
    assert len(pending) == 3
    assert await list_all(stub, status=pb.TASK_STATUS_SUCCESS) == []

    by_stage = await list_all(stub, task_stage="b")
    assert sorted(ids(by_stage)) == sorted([tasks["alice", "b"].task_id, tasks["bob", "b"].task_id])
    by_user = await list_all(stub, user_id="bob")
    assert sorted(ids(by_user)) == sorted([tasks["bob", "a"].task_id, tasks["bob", "b"].task_id])
    combined = await list_all(stub, user_id="alice", task_stage="a", status=pb.TASK_STATUS_PENDING)
    assert combined == []
    assert await list_all(stub, user_id="nobody") == []


async def test_list_tasks_filters_match_exactly(stub: pb_grpc.TaskServiceStub) -> None:
    """Filters compare byte for byte on both backends: no case folding, no space padding."""
    await register(stub, "lark")
    bob = await create(stub, "lark", user_id="bob", task_stage="s")
    bob_upper = await create(stub, "lark", user_id="Bob", task_stage="S")
    bob_padded = await create(stub, "lark", user_id="bob ", task_stage="s ")
    assert ids(await list_all(stub, user_id="bob")) == [bob.task_id]
    assert ids(await list_all(stub, user_id="Bob")) == [bob_upper.task_id]
    assert ids(await list_all(stub, user_id="bob ")) == [bob_padded.task_id]
    assert await list_all(stub, user_id="BOB") == []
    assert await list_all(stub, user_id="bob  ") == []
    assert ids(await list_all(stub, task_stage="s")) == [bob.task_id]
    assert ids(await list_all(stub, task_stage="s ")) == [bob_padded.task_id]


async def test_idempotency_keys_are_case_sensitive(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark")
    upper = await stub.CreateTask(pb.CreateTaskRequest(task_type="lark", idempotency_key="Key"))
    lower = await stub.CreateTask(pb.CreateTaskRequest(task_type="lark", idempotency_key="key"))
    assert upper.created
    assert lower.created
    assert (upper.task.task_id, lower.task.task_id) == ("Key_lark_1", "key_lark_1")
    assert (await get(stub, "key_lark_1")).task_id == "key_lark_1"
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await get(stub, "KEY_lark_1")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_tasks_pages_without_gaps_or_duplicates(
    stub: pb_grpc.TaskServiceStub, server: Running, clock: ManualClock
) -> None:
    await register(stub, "lark")
    created = [await create(stub, "lark", user_id=f"u{i}") for i in range(13)]
    # Roll onto a second and third table so the pages cross table boundaries.
    store = server.server.core.store
    for _ in range(2):
        config = await store.type_get("lark")
        assert config is not None
        assert await store.pos_split(config, clock.now())
        created += [await create(stub, "lark", user_id=f"v{i}") for i in range(6)]
    assert {t.task_id.rsplit("_", 1)[1] for t in created} == {"1", "2", "3"}

    pages: list[list[str]] = []
    token = ""
    while True:
        page = await list_page(stub, page_size=4, page_token=token)
        assert len(page.tasks) <= 4
        pages.append(ids(list(page.tasks)))
        token = page.next_page_token
        if not token:
            break
    listed = [task_id for page in pages for task_id in page]
    assert len(listed) == len(set(listed)) == 25
    assert set(listed) == set(ids(created))
    assert len(pages) in (7, 8)  # 25 / 4, plus possibly one empty final page
    # A filter and paging compose.
    filtered = await list_all(stub, page_size=2, status=pb.TASK_STATUS_PENDING)
    assert sorted(ids(filtered)) == sorted(ids(created))


async def test_list_tasks_page_size_defaults_and_clamps(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark")
    for _ in range(3):
        await create(stub, "lark")
    default = await list_page(stub)
    assert len(default.tasks) == 3
    assert default.next_page_token == ""
    huge = await list_page(stub, page_size=1_000_000)
    assert len(huge.tasks) == 3


# -- ListTaskTypes --------------------------------------------------------------


async def test_list_task_types_sorted(stub: pb_grpc.TaskServiceStub) -> None:
    assert (await stub.ListTaskTypes(pb.ListTaskTypesRequest())).task_types == []
    registered = {}
    for name in ("zeta", "alpha", "mid_type", "alpha2"):
        registered[name] = await register(stub, name, schedule_limit=len(name))
    listed = (await stub.ListTaskTypes(pb.ListTaskTypesRequest())).task_types
    assert [t.task_type for t in listed] == ["alpha", "alpha2", "mid_type", "zeta"]
    for config in listed:
        assert config == registered[config.task_type]


# -- CountTasks -----------------------------------------------------------------


async def test_count_tasks_of_a_fresh_type_is_all_zeros(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark")
    reply = await stub.CountTasks(pb.CountTasksRequest(task_type="lark"))
    assert [(c.status, c.count) for c in reply.counts] == [(s, 0) for s in STATUSES]
    assert reply.total == 0


async def test_count_tasks_by_status(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark")
    await register(stub, "swan")
    await create(stub, "swan")
    for _ in range(6):
        await create(stub, "lark")
    succeeded, failed, _still_held = await hold(stub, "lark", limit=3)
    await set_task(stub, succeeded, SUCCESS)
    await set_task(stub, failed, fail())
    reply = await stub.CountTasks(pb.CountTasksRequest(task_type="lark"))
    assert {c.status: c.count for c in reply.counts} == {
        pb.TASK_STATUS_PENDING: 3,
        pb.TASK_STATUS_PROCESSING: 1,
        pb.TASK_STATUS_SUCCESS: 1,
        pb.TASK_STATUS_FAILED: 1,
    }
    assert sorted(c.status for c in reply.counts) == STATUSES
    assert reply.total == 6
    assert (await stub.CountTasks(pb.CountTasksRequest(task_type="swan"))).total == 1


async def test_count_tasks_spans_every_table(
    stub: pb_grpc.TaskServiceStub, server: Running, clock: ManualClock
) -> None:
    await register(stub, "lark")
    await create(stub, "lark")
    store = server.server.core.store
    config = await store.type_get("lark")
    assert config is not None
    assert await store.pos_split(config, clock.now())
    await create(stub, "lark")
    assert (await stub.CountTasks(pb.CountTasksRequest(task_type="lark"))).total == 2


# -- Ping -----------------------------------------------------------------------


async def test_ping(stub: pb_grpc.TaskServiceStub, clock: ManualClock) -> None:
    reply = await stub.Ping(pb.PingRequest())
    assert reply.message == "pong"
    assert reply.server_time == clock.now()
    clock.advance(3600)
    assert (await stub.Ping(pb.PingRequest())).server_time == clock.now()


async def test_create_tasks_in_one_call(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark")
    await register(stub, "swan")
    reply = await stub.CreateTasks(
        pb.CreateTasksRequest(
            tasks=[
                pb.CreateTaskRequest(task_type="lark", context="a", idempotency_key="k1"),
                pb.CreateTaskRequest(task_type="swan", context="b"),
                pb.CreateTaskRequest(task_type="lark", idempotency_key="k1"),
            ]
        )
    )
    assert [(r.task.task_type, r.created) for r in reply.results] == [
        ("lark", True),
        ("swan", True),
        ("lark", False),
    ]
    assert reply.results[2].task.task_id == reply.results[0].task.task_id == "k1_lark_1"


async def test_create_tasks_is_all_or_nothing(stub: pb_grpc.TaskServiceStub) -> None:
    await register(stub, "lark")
    request = pb.CreateTasksRequest(
        tasks=[
            pb.CreateTaskRequest(task_type="lark"),
            pb.CreateTaskRequest(task_type="ghost"),
        ]
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateTasks(request)
    assert error_reason(refused.value) == (
        grpc.StatusCode.NOT_FOUND,
        "TASK_TYPE_NOT_FOUND",
        "tasks[1].task_type",
    )
    bad_priority = pb.CreateTasksRequest(
        tasks=[pb.CreateTaskRequest(task_type="lark", priority=31_104_001)]
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateTasks(bad_priority)
    assert error_reason(refused.value)[2] == "tasks[0].priority"
    assert sum((await counts(stub, "lark")).values()) == 0


async def test_extend_lease_of_an_unknown_task_is_not_found(
    stub: pb_grpc.TaskServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ExtendLease(pb.ExtendLeaseRequest(task_id="k_ghost_1", lease_token="t"))
    assert error_reason(refused.value)[:2] == (grpc.StatusCode.NOT_FOUND, "TASK_NOT_FOUND")
