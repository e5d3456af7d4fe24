"""The original flowsvr's /v1 routes, driven with the bodies its Go SDK and worker send.

Every answer is HTTP 200 with {"code", "msg", ...}; codes are the original's
(reference §3.0). The rules are the core's: leases fence set_task, and a read
after a write shows the write.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Running
from webclient import Web

from asyncflow.clock import ManualClock

LARK_CONTEXT = '{"ReqBody":{"Msg":"nice to meet u","FromAddr":"fish","ToAddr":"cat"},"UserId":""}'
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def go_task_data(**fields: Any) -> dict[str, Any]:
    """A TaskData as Go's encoding/json writes the original's struct: every field,
    zero values included (priority is a pointer: null when unset)."""
    data: dict[str, Any] = {
        "user_id": "", "task_id": "", "task_type": "", "task_stage": "", "status": 0,
        "priority": None, "crt_retry_num": 0, "max_retry_num": 0, "max_retry_interval": 0,
        "schedule_log": "", "context": "", "order_time": 0, "create_time": GO_ZERO_TIME,
        "modify_time": GO_ZERO_TIME,
    }  # fmt: skip
    return data | fields


def ok(reply: dict[str, Any]) -> dict[str, Any]:
    assert (reply["code"], reply["msg"]) == (0, "ok"), reply
    return reply


def refused(reply: dict[str, Any], code: int, msg: str) -> None:
    assert (reply["code"], reply["msg"]) == (code, msg), reply


async def register_lark(web: Web) -> None:
    ok(await web.post_json("/v1/register_task", {"task_type": "lark"}))


async def create_lark(web: Web, **fields: Any) -> str:
    body = {"task_data": go_task_data(user_id="niuniu", task_type="lark", task_stage="sendmsg",
                                      context=LARK_CONTEXT, **fields)}  # fmt: skip
    task_id = ok(await web.post_json("/v1/create_task", body))["task_id"]
    assert isinstance(task_id, str)
    return task_id


async def hold_lark(web: Web, limit: int = 100) -> list[dict[str, Any]]:
    """As the Go SDK does it: the JSON body and the query string both."""
    async with web.session.post(
        f"{web.base}/v1/hold_tasks?task_type=lark&limit={limit}",
        json={"task_type": "lark", "limit": limit},
    ) as response:
        assert response.status == 200
        tasks = ok(await response.json())["task_list"]
    assert isinstance(tasks, list)
    return tasks


def reported(held: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A Go worker's set_task body: the task as it held it, with its changes."""
    fields = {k: v for k, v in held.items() if k not in ("lease_deadline", "attempt")}
    return {"task_data": fields | changes}


async def get_task(web: Web, task_id: str) -> dict[str, Any]:
    task = ok(await web.get_json("/v1/get_task", task_id=task_id))["task_data"]
    assert isinstance(task, dict)
    return task


async def test_the_lark_example_end_to_end(web: Web, server: Running) -> None:
    """The original's two-stage example: sendmsg, then record, then success."""
    assert await web.get_json("/v1/ping") == {"message": "pong"}
    await register_lark(web)
    task_id = await create_lark(web, priority=5)
    assert task_id.endswith("_lark_1")

    created = await get_task(web, task_id)
    expected = {"user_id": "niuniu", "task_type": "lark", "task_stage": "sendmsg", "status": 1,
                "priority": 5, "context": LARK_CONTEXT, "crt_retry_num": 0}  # fmt: skip
    assert {k: created[k] for k in expected} == expected
    assert created["order_time"] == server.server.core.clock.now() - 5
    assert "lease_token" not in created  # a capability: only the holder sees it

    (held,) = await hold_lark(web)
    assert (held["task_id"], held["status"], held["attempt"]) == (task_id, 2, 1)
    assert held["lease_token"]
    assert (await get_task(web, task_id))["status"] == 2  # the hold is read back at once

    next_stage = reported(held, task_stage="record", status=1, context='{"sent":true}')
    ok(await web.post_json("/v1/set_task", next_stage))
    after = await get_task(web, task_id)
    assert (after["status"], after["task_stage"], after["context"]) == (
        1,
        "record",
        '{"sent":true}',
    )

    (again,) = await hold_lark(web)
    assert again["attempt"] == 2
    ok(await web.post_json("/v1/set_task", reported(again, status=3)))
    assert (await get_task(web, task_id))["status"] == 3

    counts = ok(await web.get_json("/v1/get_task_counts_by_type", task_type="lark"))
    assert counts["counts"] == 1
    assert counts["status_counts"] == {
        "pending": 0, "processing": 0, "success": 1, "failed": 0, "cancelled": 0,
    }  # fmt: skip


async def test_a_worker_error_is_a_server_side_retry_then_a_failure(
    web: Web, clock: ManualClock
) -> None:
    ok(await web.post_json("/v1/register_task", {"task_type": "lark", "max_retry_num": 1,
                                                 "retry_interval": -7}))  # fmt: skip
    task_id = await create_lark(web)
    (held,) = await hold_lark(web)
    log = '{"LastData":{"TraceId":"t1","ErrMsg":"smtp down","Cost":"3ms"},"HistoryDatas":[]}'
    # The worker counts the retry and computes its own order_time: the server
    # applies the type's back-off instead (uniform, 7 s).
    ok(await web.post_json("/v1/set_task", reported(held, status=1, crt_retry_num=1,
                                                    schedule_log=log, order_time=1)))  # fmt: skip
    task = await get_task(web, task_id)
    assert (task["status"], task["crt_retry_num"]) == (1, 1)
    assert task["order_time"] == clock.now() + 7
    assert "smtp down" in task["schedule_log"]
    assert await hold_lark(web) == []  # not due yet
    clock.advance(7)
    (again,) = await hold_lark(web)
    ok(await web.post_json("/v1/set_task", reported(again, status=1, crt_retry_num=2)))
    assert (await get_task(web, task_id))["status"] == 4  # max_retry_num 1: used up


async def test_set_task_needs_the_holders_lease(web: Web, clock: ManualClock) -> None:
    await register_lark(web)
    task_id = await create_lark(web)
    (held,) = await hold_lark(web)
    without = reported(held, status=3)
    del without["task_data"]["lease_token"]
    refused(await web.post_json("/v1/set_task", without), 8020, "input invalid")
    forged = reported(held, status=3, lease_token="0" * 32)
    reply = await web.post_json("/v1/set_task", forged)
    refused(reply, 8041, "set task failed")
    assert reply["error"]["reason"] == "LEASE_LOST"
    assert (await get_task(web, task_id))["status"] == 2  # nothing changed

    refused(await web.post_json("/v1/set_task", reported(held, status=2)), 8020, "input invalid")
    clock.advance(31)  # past the deadline, but not recovered yet: still its lease
    ok(await web.post_json("/v1/set_task", reported(held, status=3)))
    reply = await web.post_json("/v1/set_task", reported(held, status=4))
    refused(reply, 8041, "set task failed")  # terminal is sticky, and said so
    assert reply["error"]["reason"] == "TASK_NOT_PROCESSING"
    assert (await get_task(web, task_id))["status"] == 3


async def test_a_recovered_task_fences_its_old_holder(
    web: Web, server: Running, clock: ManualClock
) -> None:
    await register_lark(web)
    task_id = await create_lark(web)
    (old,) = await hold_lark(web)
    clock.advance(31)
    core = server.server.core
    await core.recover_stuck(await core.task_type("lark"), 100)
    clock.advance(10)
    (new,) = await hold_lark(web)
    assert new["lease_token"] != old["lease_token"]
    refused(await web.post_json("/v1/set_task", reported(old, status=3)), 8041, "set task failed")
    ok(await web.post_json("/v1/set_task", reported(new, status=3)))
    assert (await get_task(web, task_id))["status"] == 3


async def test_create_with_a_task_id_is_idempotent(web: Web) -> None:
    await register_lark(web)
    first = await create_lark(web, task_id="order-42")
    assert first == "order-42_lark_1"
    assert await create_lark(web, task_id="order-42") == first
    assert await create_lark(web, task_id=first) == first  # a whole id of this type
    assert ok(await web.get_json("/v1/get_task_counts_by_type", task_type="lark"))["counts"] == 1


async def test_lists_and_configs(web: Web) -> None:
    ok(await web.post_json("/v1/register_task", {"task_type": "lark", "schedule_limit": 50,
                                                 "max_retry_num": 2}))  # fmt: skip
    ids = [await create_lark(web) for _ in range(3)]
    listed = ok(await web.get_json("/v1/get_task_list", task_type="lark", status=1, limit=2))
    assert [t["task_id"] for t in listed["task_list"]] == ids[:2]
    rest = ok(await web.get_json("/v1/get_task_list", task_type="lark", status=1, limit=2,
                                 page_token=listed["next_page_token"]))  # fmt: skip
    assert [t["task_id"] for t in rest["task_list"]] == ids[2:]

    (config,) = ok(await web.get_json("/v1/get_task_schedule_cfg_list"))["task_schedule_cfg_list"]
    expected = {"task_type": "lark", "schedule_limit": 50, "max_retry_num": 2,
                "retry_interval": 5, "max_retry_interval": 30}  # fmt: skip
    assert {k: config[k] for k in expected} == expected
    assert config["create_time"].endswith("Z")


async def test_hold_limit_zero_means_the_maximum(web: Web) -> None:
    await register_lark(web)
    ok(await web.post_json("/v1/register_task", {"task_type": "lark", "schedule_limit": 1}))
    for _ in range(3):
        await create_lark(web)
    assert len(await hold_lark(web, limit=0)) == 3  # not the type's batch of 1


BAD_POSTS = [
    ("/v1/register_task", {}, 8020),
    ("/v1/register_task", {"task_type": "Bad-Type"}, 8020),
    ("/v1/register_task", {"task_type": 7}, 8021),
    ("/v1/create_task", {}, 8020),
    ("/v1/create_task", {"task_data": "lark"}, 8021),
    ("/v1/create_task", {"task_data": go_task_data()}, 8020),
    ("/v1/create_task", {"task_data": go_task_data(task_type="lark", priority=-1)}, 8020),
    ("/v1/create_task", {"task_data": go_task_data(task_type="lark", priority=31_104_001)}, 8020),
    ("/v1/create_task", {"task_data": go_task_data(task_type="lark", priority="high")}, 8021),
    ("/v1/create_task", {"task_data": go_task_data(task_type="lark", context="x" * 9000)}, 8020),
    ("/v1/create_task", {"task_data": go_task_data(task_type="nope")}, 8039),
    ("/v1/create_task", {"task_data": go_task_data(task_type="lark", task_id="a_b")}, 8020),
    ("/v1/hold_tasks", {}, 8020),
    ("/v1/hold_tasks", {"task_type": "lark", "limit": -1}, 8020),
    ("/v1/hold_tasks", {"task_type": "lark", "limit": "ten"}, 8021),
    ("/v1/hold_tasks", {"task_type": "nope"}, 8039),
    ("/v1/set_task", {"task_data": go_task_data()}, 8020),
    ("/v1/set_task", {"task_data": go_task_data(task_id="x_lark", lease_token="t",
                                                status=3)}, 8020),
    ("/v1/set_task", {"task_data": go_task_data(
        task_id="7a0c5a2e-aaaa-bbbb-cccc-000000000000_lark_1", lease_token="t", status=3)}, 8035),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "code"), BAD_POSTS)
async def test_bad_bodies_get_the_originals_codes(
    web: Web, path: str, body: dict[str, Any], code: int
) -> None:
    await register_lark(web)
    reply = await web.post_json(path, body)  # HTTP 200 all the same
    assert reply["code"] == code, reply
    assert reply["error"]["message"]
    assert ok(await web.get_json("/v1/get_task_counts_by_type", task_type="lark"))["counts"] == 0


async def test_a_body_that_is_not_json_fails_to_bind(web: Web) -> None:
    async with web.session.post(
        web.base + "/v1/create_task", data="{", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 200
        refused(await response.json(), 8021, "should bind failed")


BAD_GETS = [
    ("/v1/get_task", {}, 8020),
    ("/v1/get_task", {"task_id": "not-an-id"}, 8035),
    ("/v1/get_task", {"task_id": "7a0c5a2e-aaaa-bbbb-cccc-000000000000_lark_1"}, 8035),
    ("/v1/get_task_list", {"task_type": "lark", "limit": 10}, 8021),
    ("/v1/get_task_list", {"task_type": "lark", "status": 1, "limit": 0}, 8021),
    ("/v1/get_task_list", {"task_type": "lark", "status": "one", "limit": 10}, 8021),
    ("/v1/get_task_list", {"task_type": "lark", "status": 9, "limit": 10}, 8020),
    ("/v1/get_task_list", {"task_type": "nope", "status": 1, "limit": 10}, 8039),
    ("/v1/get_task_counts_by_type", {}, 8020),
    ("/v1/get_task_counts_by_type", {"task_type": "nope"}, 8039),
]  # fmt: skip


@pytest.mark.parametrize(("path", "params", "code"), BAD_GETS)
async def test_bad_queries_get_the_originals_codes(
    web: Web, path: str, params: dict[str, Any], code: int
) -> None:
    await register_lark(web)
    reply = await web.get_json(path, **params)
    assert reply["code"] == code, reply
