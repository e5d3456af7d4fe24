"""`asyncflow serve --processes 2` as a real process tree on MariaDB and Redis.

The children share one gRPC port (SO_REUSEPORT): each new connection lands on
one of them, chosen by the kernel. Which one a channel reached is read from the
children's own /metrics (each serves its HTTP side on a port of its own).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import pytest
from conftest import serve_env
from rpc import create, register
from streams import RawWorker
from waiting import eventually
from webclient import Metrics

from asyncflow.config import Config
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

MYSQL_ONLY = pytest.mark.parametrize("backend", ["mysql"])

LISTENING = re.compile(r"^asyncflow listening on [\w.:\[\]]+:(?P<port>\d+)$", re.M)
PROCESS = re.compile(
    r"^asyncflow process (?P<index>\d+) \(pid (?P<pid>\d+)\): .* at (?P<url>\S+)$", re.M
)
RESTARTED = re.compile(
    r"process (?P<index>\d+) restarted \(pid (?P<pid>\d+)\), HTTP at (?P<url>\S+)"
)
ASYNCFLOW = Path(sys.executable).with_name("asyncflow")


@dataclass
class Tree:
    """The parent, its log, and what it printed about its children."""

    process: subprocess.Popen[bytes]
    log_path: Path
    address: str = ""
    pids: dict[int, int] = field(default_factory=dict)
    """Each child's pid, by index."""
    urls: dict[int, str] = field(default_factory=dict)
    """Each child's HTTP side."""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def started(self) -> None:
        async def listening() -> bool:
            assert self.process.poll() is None, self.log()
            text = self.log()  # the address, then a line per child
            return LISTENING.search(text) is not None and len(PROCESS.findall(text)) == 2

        await eventually(listening, within=60, what="asyncflow serve --processes 2 listening")
        text = self.log()
        found = LISTENING.search(text)
        assert found is not None
        self.address = f"127.0.0.1:{found['port']}"
        children = list(PROCESS.finditer(text))
        self.pids = {int(m["index"]): int(m["pid"]) for m in children}
        self.urls = {int(m["index"]): m["url"] for m in children}
        assert sorted(self.pids) == [0, 1]


@contextmanager
def spawned(config: Config, tmp_path: Path, **settings: str) -> Iterator[Tree]:
    """`asyncflow serve` with two processes on the MariaDB database and Redis prefix
    of `config`, stopped (SIGTERM) at the end if still running."""
    env = serve_env(
        config,
        ASYNCFLOW_SERVER_PORT="0",
        ASYNCFLOW_SERVER_SHUTDOWN_DELAY_SECONDS="0",
        ASYNCFLOW_SERVER_PROCESSES="2",
        **settings,
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(ASYNCFLOW), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield Tree(process, log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


@pytest.fixture
def tree(config: Config, tmp_path: Path) -> Iterator[Tree]:
    with spawned(config, tmp_path, ASYNCFLOW_GOVERNANCE_ENABLED="false") as started:
        yield started


async def handled(url: str, method: str) -> float:
    """TaskService calls of `method` the process at `url` has answered."""
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        assert response.status == 200
        return Metrics(await response.text()).total("asyncflow_rpc_handled_total", method=method)


@asynccontextmanager
async def channel(address: str) -> AsyncIterator[pb_grpc.TaskServiceStub]:
    """A channel of its own: a new connection, which the kernel gives to one child
    (without a local subchannel pool, channels to one address share a connection)."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(address, options=options) as opened:
        yield pb_grpc.TaskServiceStub(opened)


async def which_process(tree: Tree, stub: pb_grpc.TaskServiceStub) -> int:
    """The child this stub's connection reached: the one whose Ping count moved."""
    before = {index: await handled(url, "Ping") for index, url in tree.urls.items()}
    await stub.Ping(pb.PingRequest())
    after = {index: await handled(url, "Ping") for index, url in tree.urls.items()}
    (moved,) = [index for index in before if after[index] > before[index]]
    return moved


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def processes_reached(tree: Tree) -> set[int]:
    """The children that new connections reached, one create each, until both were.
    Each channel lands on one child, each with probability 1/2: 40 channels all
    landing on the same one would happen once in 2**39 runs."""
    reached: set[int] = set()
    for _ in range(40):
        async with channel(tree.address) as stub:
            await create(stub)
            reached.add(await which_process(tree, stub))
        if reached == {0, 1}:
            break
    return reached


@MYSQL_ONLY
async def test_calls_reach_both_processes(tree: Tree) -> None:
    await tree.started()
    async with channel(tree.address) as stub:
        await register(stub)
    assert await processes_reached(tree) == {0, 1}
    for url in tree.urls.values():
        assert await handled(url, "CreateTask") > 0


@MYSQL_ONLY
async def test_a_stream_on_one_process_gets_a_task_created_through_the_other(tree: Tree) -> None:
    """The create's wake-up crosses processes over Redis: with an hour-long
    fallback poll, nothing else would bring the task to the stream in time."""
    await tree.started()
    async with channel(tree.address) as first:
        await register(first, schedule_interval_seconds=3600)
        on = await which_process(tree, first)
        worker = RawWorker(first)
        await worker.subscribe("lark", window=4)
        for _ in range(40):  # a channel to the other child
            async with channel(tree.address) as second:
                if await which_process(tree, second) == on:
                    continue
                created = await create(second)
                break
        else:
            raise AssertionError("no channel reached the other process")
        await worker.until(tasks=1, within=30)
        assert [task.task_id for task in worker.tasks] == [created.task_id]
        await worker.report_success(*worker.tasks)
        await worker.until(answers=1)
        await worker.close()


@MYSQL_ONLY
async def test_sigterm_stops_every_child_and_the_parent(tree: Tree) -> None:
    await tree.started()
    tree.process.send_signal(signal.SIGTERM)
    assert tree.process.wait(timeout=60) == 0
    for pid in tree.pids.values():
        assert not alive(pid)
    text = tree.log()
    for index in tree.pids:
        assert f"[process {index}] asyncflow.server.app: asyncflow stopped" in text
    assert "asyncflow stopped (2 processes)" in text
    assert "exited unexpectedly" not in text


@MYSQL_ONLY
async def test_a_killed_child_is_restarted_and_the_service_keeps_answering(tree: Tree) -> None:
    await tree.started()
    async with channel(tree.address) as stub:
        await register(stub)
    killed = tree.pids[1]
    os.kill(killed, signal.SIGKILL)

    async def restarted() -> bool:
        return RESTARTED.search(tree.log()) is not None

    await eventually(restarted, within=60, what="the killed child restarted")
    found = RESTARTED.search(tree.log())
    assert found is not None
    assert found["index"] == "1"
    assert int(found["pid"]) != killed
    assert alive(int(found["pid"]))
    assert f"process 1 (pid {killed}) exited unexpectedly (killed by SIGKILL)" in tree.log()
    tree.urls[1] = found["url"]
    # Every new connection is answered (none reaches the dead process), and the
    # new child takes its share.
    assert await processes_reached(tree) == {0, 1}
    tree.process.send_signal(signal.SIGTERM)
    assert tree.process.wait(timeout=60) == 0


@MYSQL_ONLY
async def test_each_governance_loop_is_led_by_one_process(config: Config, tmp_path: Path) -> None:
    """The children are replicas: each loop runs under its Redis lock, on one of them."""
    loops = ("recover_stuck", "split", "advance_begin", "cron")
    with spawned(config, tmp_path) as tree:
        await tree.started()

        async def all_led() -> bool:
            return all(f"leading governance loop {loop}" in tree.log() for loop in loops)

        await eventually(all_led, within=60, what="every governance loop led")
        text = tree.log()
        for loop in loops:
            leaders = re.findall(
                rf"\[process (\d)\] \S+: leading governance loop {loop}$", text, re.M
            )
            assert len(leaders) == 1, (loop, leaders)


def test_several_processes_need_mysql_and_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCFLOW_")}
    env |= {
        "ASYNCFLOW_STORE_SQLITE_PATH": str(tmp_path / "asyncflow.db"),
        "ASYNCFLOW_SERVER_PORT": "0",
        "ASYNCFLOW_HTTP_PORT": "0",
    }
    done = subprocess.run(
        [str(ASYNCFLOW), "serve", "--processes", "2"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("asyncflow: configuration error: server.processes: 2 processes")
    assert "store.backend = mysql and cache.backend = redis" in done.stderr
    assert "asyncflow listening" not in done.stdout


def test_a_taken_port_is_refused_before_any_child_starts(tmp_path: Path) -> None:
    """Sharing the port is for the processes of one `serve`, never with another program."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCFLOW_")}
    env |= {"ASYNCFLOW_STORE_BACKEND": "mysql", "ASYNCFLOW_CACHE_BACKEND": "redis"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(ASYNCFLOW), "serve", "--processes", "2"],
            env=env | {"ASYNCFLOW_SERVER_PORT": str(port)},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2
    assert f"server.port: cannot listen on 127.0.0.1:{port}" in done.stderr
