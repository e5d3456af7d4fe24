"""The SDK and the CLI end to end against a server with TLS and tokens."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import Running, StartServer
from secure import Pki, Tokens
from test_worker_process import WorkerProcess
from test_worker_process import processes as processes  # a fixture
from waiting import eventually

from asyncflow.client import (
    ChannelSettings,
    Client,
    PermissionDenied,
    SyncClient,
    TaskStatus,
    Unauthenticated,
)
from asyncflow.config import Config
from asyncflow.worker import Job, Worker

ASYNCFLOW = Path(sys.executable).with_name("asyncflow")


@pytest.fixture
def backend() -> str:
    """Security does not touch the store: one backend is enough."""
    return "sqlite"


@pytest.fixture
async def secured(start_server: StartServer, config: Config, pki: Pki, tokens: Tokens) -> Running:
    return await start_server(replace(pki.server(config), auth=tokens.auth()))


def settings(pki: Pki, token: str | None) -> ChannelSettings:
    return ChannelSettings(tls_ca_file=pki.ca_file, token=token or "")


async def test_client_and_worker(secured: Running, pki: Pki, tokens: Tokens) -> None:
    address = f"localhost:{secured.server.port}"
    async with Client(address, settings=settings(pki, tokens.tokens["admin"])) as admin:
        await admin.register_type("lark")
    async with Client(address, settings=settings(pki, tokens.tokens["producer"])) as producer:
        task = await producer.create("lark", context="hello")
        with pytest.raises(PermissionDenied):
            await producer.pause_type("lark")
        worker = Worker(address, settings=settings(pki, tokens.tokens["worker"]))
        seen: list[str] = []

        @worker.handler("lark")
        async def lark(job: Job) -> None:
            seen.append(job.context)

        async with worker:

            async def done() -> bool:
                return (await producer.get(task.task_id)).status == TaskStatus.SUCCESS

            await eventually(done, what="the task done by a worker over TLS with a token")
        assert seen == ["hello"]
    async with Client(address, settings=settings(pki, None), timeout=5) as anonymous:
        with pytest.raises(Unauthenticated):
            await anonymous.get(task.task_id)


async def test_sync_client_from_the_environment(
    secured: Running, pki: Pki, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCFLOW_TLS_CA_FILE", pki.ca_file)
    monkeypatch.setenv("ASYNCFLOW_TOKEN", tokens.tokens["reader"])

    def list_types() -> list[str]:
        with SyncClient(f"localhost:{secured.server.port}") as client:
            return [t.task_type for t in client.list_types()]

    assert await asyncio.to_thread(list_types) == []


async def cli(*args: str, **env: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCFLOW_")}
    process = await asyncio.create_subprocess_exec(
        str(ASYNCFLOW), *args, env={**clean, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_with_tls_and_a_new_token(secured: Running, pki: Pki, tokens: Tokens) -> None:
    """`asyncflow token create` prints a token and its entry; once the entry is in
    the file (and the file reloaded), the CLI works with that token."""
    code, out, err = await cli("token", "create", "--name", "ops", "--role", "admin")
    assert (code, err) == (0, "")
    token = re.search(r"^  (aft_\S+)$", out, re.MULTILINE)
    assert token is not None
    entry = out[out.index("[[token]]") :]
    assert token.group(1) not in entry
    tokens.entries.append(entry)
    tokens.save()
    secured.server.reload()

    address = f"localhost:{secured.server.port}"
    command = ("type", "register", "lark", "--address", address, "--tls-ca", pki.ca_file)
    code, out, err = await cli(*command, ASYNCFLOW_TOKEN=token.group(1))
    assert (code, err) == (0, ""), out
    assert out.splitlines()[1].split()[0] == "lark"
    code, out, err = await cli(*command, ASYNCFLOW_TOKEN=tokens.tokens["reader"])
    assert code == 1
    assert err.startswith("asyncflow type register: PERMISSION_DENIED: reader (roles reader)")
    code, out, err = await cli(*command)
    assert (code, err.split(":")[1].strip()) == (1, "UNAUTHENTICATED")


async def test_token_create_refuses_bad_entries() -> None:
    code, _, err = await cli("token", "create", "--name", "w", "--role", "reader", "--types", "a")
    assert code == 2
    assert "worker role" in err


async def test_the_worker_command_with_tls_and_a_token(
    secured: Running, pki: Pki, tokens: Tokens, processes: list[WorkerProcess]
) -> None:
    """`asyncflow worker --tls-ca ...` with ASYNCFLOW_TOKEN from the environment."""
    address = f"localhost:{secured.server.port}"
    async with Client(address, settings=settings(pki, tokens.tokens["admin"])) as admin:
        await admin.register_type("slow")
        task = await admin.create("slow")
        worker = WorkerProcess(address, args=("--tls-ca", pki.ca_file), WORKER_SECONDS="0",
                               ASYNCFLOW_TOKEN=tokens.tokens["worker"])  # fmt: skip
        processes.append(worker)
        assert await worker.until("done", 1) == [task.task_id]

        async def succeeded() -> bool:
            return (await admin.get(task.task_id)).status == TaskStatus.SUCCESS

        await eventually(succeeded, what="the task reported over TLS with the worker's token")
