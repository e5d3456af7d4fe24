"""The Node.js example (examples/node), written from the .proto alone, against a real server.

Its modules come from the committed package-lock.json (`npm ci`, which `make
test` runs through `make node-deps`; the fixture below does it too when they
are missing or older than the lock file, so a bare pytest run works).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import Running, StartServer
from rpc import get
from secure import Pki, Tokens

from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node"
NODE_TIMEOUT = 120.0

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture(scope="session")
def node_example() -> Path:
    installed = EXAMPLE / "node_modules" / ".package-lock.json"
    lock = EXAMPLE / "package-lock.json"
    if not installed.is_file() or installed.stat().st_mtime < lock.stat().st_mtime:
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed for the Node.js example"
        subprocess.run([npm, "ci"], cwd=EXAMPLE, check=True, capture_output=True, timeout=600)
    return EXAMPLE


async def test_node_example_registers_creates_works_and_reads_error_info(
    node_example: Path, server: Running
) -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed for the Node.js example"
    # Not subprocess.run: the server runs on this event loop and must keep serving.
    process = await asyncio.create_subprocess_exec(
        node,
        str(node_example / "example.js"),
        server.address,
        "node_demo",
        "7",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT)
    output = out.decode()
    assert process.returncode == 0, output + err.decode()
    (last,) = [line for line in output.splitlines() if line.startswith("RESULT ")]
    result = json.loads(last.removeprefix("RESULT "))

    # The refused CreateTask's ErrorInfo, decoded in Node from grpc-status-details-bin.
    refused = result["refused"]
    assert (refused["code"], refused["reason"], refused["field"], refused["domain"]) == (
        "NOT_FOUND",
        "TASK_TYPE_NOT_FOUND",
        "task_type",
        "asyncflow",
    )
    # The duplicate report came back as an ItemError on the stream.
    duplicate = result["duplicate"]
    assert duplicate["code"] == "FAILED_PRECONDITION"
    assert duplicate["reason"] == "TASK_NOT_PROCESSING"
    assert duplicate["task_id"] in result["ids"]

    # What the server holds, read here rather than trusting the example's output.
    assert len(result["ids"]) == 7
    for task_id in result["ids"]:
        task = await get(server.stub, task_id)
        assert (task.task_type, task.status, task.task_stage) == (
            "node_demo",
            pb.TASK_STATUS_SUCCESS,
            "store",
        )
        context = json.loads(task.context)
        assert context["stored"] is True
        assert context["page"] == f"page-{context['n']}"
        log = json.loads(task.schedule_log)
        outcomes = [(e["stage"], e["outcome"]) for e in [*log["history"], log["last"]]]
        assert outcomes == [("fetch", "next_stage"), ("store", "success")]
    counts = await server.stub.CountTasks(pb.CountTasksRequest(task_type="node_demo"))
    assert counts.total == 7


async def test_node_example_with_tls_and_a_token(
    node_example: Path, start_server: StartServer, config: Config, tmp_path: Path
) -> None:
    """The same variables as the Python SDK: ASYNCFLOW_TLS_CA_FILE, ASYNCFLOW_TOKEN."""
    pki, tokens = Pki(tmp_path), Tokens(tmp_path / "tokens.toml")
    secured = await start_server(replace(pki.server(config), auth=tokens.auth()))
    node = shutil.which("node")
    assert node is not None, "node is needed for the Node.js example"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCFLOW_")}
    env.update(ASYNCFLOW_TLS_CA_FILE=pki.ca_file, ASYNCFLOW_TOKEN=tokens.tokens["admin"])
    process = await asyncio.create_subprocess_exec(
        node, str(node_example / "example.js"), f"localhost:{secured.server.port}",
        "node_tls", "2", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT)
    assert process.returncode == 0, out.decode() + err.decode()
    (last,) = [line for line in out.decode().splitlines() if line.startswith("RESULT ")]
    assert len(json.loads(last.removeprefix("RESULT "))["ids"]) == 2
    # Without the token, the server refuses it.
    del env["ASYNCFLOW_TOKEN"]
    process = await asyncio.create_subprocess_exec(
        node, str(node_example / "example.js"), f"localhost:{secured.server.port}",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT)
    assert process.returncode != 0
    assert "UNAUTHENTICATED" in out.decode() + err.decode()
