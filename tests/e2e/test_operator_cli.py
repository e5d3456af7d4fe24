"""`asyncflow task|type|schedule ...` as a subprocess against a real server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from conftest import Running
from rpc import SUCCESS, create, hold, report

from asyncflow.v1 import task_service_pb2 as pb

ASYNCFLOW = Path(sys.executable).with_name("asyncflow")


async def cli(server: Running, *args: str) -> tuple[int, str, str]:
    """Run `asyncflow ARGS --address ...` (the server answers meanwhile: no blocking)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCFLOW_")}
    process = await asyncio.create_subprocess_exec(
        str(ASYNCFLOW), *args, "--address", server.address, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def ok(server: Running, *args: str) -> str:
    code, out, err = await cli(server, *args)
    assert (code, err) == (0, ""), (code, out, err)
    return out


def fields(shown: str) -> dict[str, str]:
    """The `name: value` lines of a single task or schedule."""
    return {name: value.strip() for name, _, value in (line.partition(":") for line in
                                                       shown.splitlines())}  # fmt: skip


async def test_types_tasks_and_schedules(server: Running) -> None:
    registered = await ok(server, "type", "register", "lark", "--max-retry-num", "2",
                          "--retry-strategy", "uniform")  # fmt: skip
    assert registered.splitlines()[0].split() == ["TYPE", "PAUSED", "LIMIT", "LEASE", "RETRIES",
                                                  "BACK-OFF", "TABLES"]  # fmt: skip
    assert registered.splitlines()[1].split()[:5] == ["lark", "no", "100", "30s", "2"]
    assert "yes" in (await ok(server, "type", "pause", "lark")).splitlines()[1]
    (listed,) = json.loads(await ok(server, "type", "list", "--json"))
    assert (listed["task_type"], listed["paused"]) == ("lark", True)
    assert listed["retry_strategy"] == "UNIFORM"
    await ok(server, "type", "resume", "lark")

    stub = server.stub
    first = await create(stub, task_stage="send")
    second = await create(stub, task_stage="send")
    other = await create(stub, task_stage="record")
    table = (await ok(server, "task", "list", "lark", "--stage", "send")).splitlines()
    assert table[0].split() == ["TASK", "ID", "STAGE", "STATUS", "RETRIES", "DUE", "MODIFIED"]
    assert [line.split()[0] for line in table[1:]] == [first.task_id, second.task_id]
    assert "PENDING" in table[1]
    got = json.loads(await ok(server, "task", "get", first.task_id, "--json"))
    assert (got["task_id"], got["status"], got["stage"]) == (first.task_id, "PENDING", "send")
    shown = await ok(server, "task", "get", first.task_id)
    assert (fields(shown)["task_id"], fields(shown)["status"]) == (first.task_id, "PENDING")

    cancelled = await ok(server, "task", "cancel", first.task_id, "--reason", "not today")
    assert fields(cancelled)["status"] == "CANCELLED"
    retried = json.loads(await ok(server, "task", "retry", first.task_id, "--new-stage", "again",
                                  "--json"))  # fmt: skip
    assert (retried["status"], retried["stage"]) == ("PENDING", "again")
    bulk = json.loads(await ok(server, "task", "cancel", "--type", "lark", "--stage", "send",
                               "--json"))  # fmt: skip
    assert [t["task_id"] for t in bulk] == [second.task_id]
    assert "PENDING" in await ok(server, "task", "get", other.task_id)

    made = await ok(server, "schedule", "create", "nightly", "--cron", "0 3 * * *", "--type",
                    "lark", "--time-zone", "Europe/Paris", "--catch-up", "all")  # fmt: skip
    assert fields(made)["time_zone"] == "Europe/Paris"
    schedules = (await ok(server, "schedule", "list")).splitlines()
    assert schedules[0].split()[:3] == ["NAME", "CRON", "TIME"]
    assert schedules[1].split()[:6] == ["nightly", "0", "3", "*", "*", "*"]
    assert "ALL 10" in schedules[1]
    assert json.loads(await ok(server, "schedule", "pause", "nightly", "--json"))["paused"]
    assert not json.loads(await ok(server, "schedule", "resume", "nightly", "--json"))["paused"]
    assert await ok(server, "schedule", "delete", "nightly") == "deleted schedule nightly\n"
    assert await ok(server, "schedule", "list") == "(none)\n"


async def test_refusals_and_usage_errors(server: Running) -> None:
    await ok(server, "type", "register", "lark")
    await create(server.stub)
    (held,) = await hold(server.stub)
    await report(server.stub, held, SUCCESS)
    code, out, err = await cli(server, "task", "cancel", held.task_id)
    assert (code, out) == (1, "")
    assert err.startswith("asyncflow task cancel: TASK_FINISHED: ")
    code, _, err = await cli(server, "schedule", "delete", "ghost")
    assert (code, err.split(":")[1].strip()) == (1, "SCHEDULE_NOT_FOUND")
    code, _, err = await cli(server, "task", "cancel", held.task_id, "--type", "lark")
    assert code == 2
    assert "give a TASK_ID or --type, not both" in err
    code, _, err = await cli(server, "task", "retry", "--type", "lark", "--status", "pending")
    assert code == 2
    assert "must be one of failed, cancelled" in err
    assert (await server.stub.GetTask(pb.GetTaskRequest(task_id=held.task_id))).task.status == (
        pb.TASK_STATUS_SUCCESS
    )


async def test_an_unreachable_server_is_exit_1(server: Running) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCFLOW_")}
    process = await asyncio.create_subprocess_exec(
        str(ASYNCFLOW), "type", "list", "--address", "127.0.0.1:1", "--timeout", "2", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    assert err.decode().startswith("asyncflow type list: ")
