"""The real `asyncflow` console script, run as a subprocess in a temporary directory."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from waiting import eventually

from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc

BIN = Path(sys.executable).parent
ASYNCFLOW = BIN / "asyncflow"
GRPCURL = BIN / "grpcurl"
SERVICE = "asyncflow.v1.TaskService"
LISTENING = re.compile(r"asyncflow listening on (?P<host>[\w.:\[\]]+):(?P<port>\d+)$")
DASHBOARD = re.compile(r"asyncflow dashboard at (?P<url>http://127\.0\.0\.1:\d+/ui)$")
START_TIMEOUT = 60.0
CALL_TIMEOUT = 30.0


def clean_env(**overrides: str) -> dict[str, str]:
    """The test's environment without any ASYNCFLOW_* setting, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCFLOW_")}
    env.update(overrides)
    return env


def run_cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `asyncflow ARGS` to completion (commands that are expected to exit)."""
    return subprocess.run(
        [str(ASYNCFLOW), *args],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )


class Process:
    """A running `asyncflow` process whose output lines are collected as they come."""

    def __init__(self, cwd: Path, *args: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            [str(ASYNCFLOW), *args],
            cwd=cwd,
            env=clean_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.changed = threading.Condition()
        self.readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, name: str, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            with self.changed:
                self.lines[name].append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for_line(self, name: str, match: Callable[[str], object], timeout: float) -> str:
        """The first line of `name` for which `match` is truthy, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines[name]:
                    if match(line):
                        return line
                left = deadline - time.monotonic()
                if self.proc.poll() is not None and not any(r.is_alive() for r in self.readers):
                    break
                if left <= 0:
                    break
                self.changed.wait(left)
        raise AssertionError(
            f"no matching {name} line within {timeout}s (exit code {self.proc.poll()});\n"
            f"stdout: {self.lines['stdout']}\nstderr: {self.lines['stderr']}"
        )

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        for reader in self.readers:
            reader.join(timeout)
        return code

    def close(self) -> None:
        """Kill the process if it still runs, and release its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish(CALL_TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def serving(tmp_path: Path, **env: str) -> Iterator[tuple[Process, str]]:
    """`asyncflow serve` on port 0 and a SQLite file in tmp_path: (process, address)."""
    process = Process(
        tmp_path,
        "serve",
        ASYNCFLOW_SERVER_PORT="0",
        ASYNCFLOW_HTTP_PORT="0",
        ASYNCFLOW_STORE_SQLITE_PATH=str(tmp_path / "served.db"),
        **env,
    )
    try:
        line = process.wait_for_line("stdout", LISTENING.search, START_TIMEOUT)
        found = LISTENING.search(line)
        assert found is not None
        assert found["host"] == "127.0.0.1"
        assert int(found["port"]) > 0
        yield process, f"127.0.0.1:{found['port']}"
    finally:
        process.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Process, str]]:
    # A short shutdown delay: the SIGTERM below ends the server once it elapses.
    with serving(tmp_path, ASYNCFLOW_SERVER_SHUTDOWN_DELAY_SECONDS="0.1") as started:
        yield started


def test_serve_health_reflection_round_trip_and_sigterm(
    served: tuple[Process, str], tmp_path: Path
) -> None:
    process, address = served
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE):
            reply = health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            timeout=CALL_TIMEOUT,
        )
        services = {s.name for r in responses for s in r.list_services_response.service}
        assert SERVICE in services
        assert "grpc.health.v1.Health" in services

        stub = pb_grpc.TaskServiceStub(channel)
        stub.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type="lark"), timeout=CALL_TIMEOUT)
        created = stub.CreateTask(
            pb.CreateTaskRequest(task_type="lark", context="hi"), timeout=CALL_TIMEOUT
        ).task
        (held,) = stub.HoldTasks(pb.HoldTasksRequest(task_type="lark"), timeout=CALL_TIMEOUT).tasks
        assert held.task_id == created.task_id
        assert held.lease.token
        done = stub.SetTask(
            pb.SetTaskRequest(
                task_id=held.task_id,
                lease_token=held.lease.token,
                success=pb.SetTaskRequest.Success(),
                context="bye",
            ),
            timeout=CALL_TIMEOUT,
        ).task
        assert done.status == pb.TASK_STATUS_SUCCESS
        got = stub.GetTask(pb.GetTaskRequest(task_id=created.task_id), timeout=CALL_TIMEOUT).task
        assert (got.status, got.context) == (pb.TASK_STATUS_SUCCESS, "bye")

    assert (tmp_path / "served.db").is_file()
    process.proc.send_signal(signal.SIGTERM)
    assert process.finish(START_TIMEOUT) == 0
    assert any("signal received: health is NOT_SERVING" in line for line in process.lines["stderr"])
    assert any("asyncflow stopped" in line for line in process.lines["stderr"])


def test_serve_prints_the_dashboard_url(served: tuple[Process, str]) -> None:
    process, _ = served
    line = process.wait_for_line("stdout", DASHBOARD.search, START_TIMEOUT)
    found = DASHBOARD.search(line)
    assert found is not None
    with urllib.request.urlopen(found["url"], timeout=CALL_TIMEOUT) as page:
        assert page.status == 200
        assert "Task types" in page.read().decode()


async def test_sigterm_shows_not_serving_while_streams_and_calls_still_work(
    tmp_path: Path,
) -> None:
    """What a load balancer needs: after SIGTERM, health checks see NOT_SERVING for
    server.shutdown_delay_seconds while calls and streams are served as usual; then
    (here: at the second signal) streams end with OK, un-started tasks released."""
    with serving(tmp_path, ASYNCFLOW_SERVER_SHUTDOWN_DELAY_SECONDS="3600") as (process, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.TaskServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            await stub.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type="lark"))
            requests: asyncio.Queue[pb.WorkTasksRequest | None] = asyncio.Queue()

            async def sent() -> AsyncIterator[pb.WorkTasksRequest]:
                while (request := await requests.get()) is not None:
                    yield request

            stream = stub.WorkTasks(sent())
            subscribe = pb.WorkTasksRequest.Subscribe(task_types=["lark"], window=1)
            await requests.put(pb.WorkTasksRequest(subscribe=subscribe))
            assert (await stream.read()).HasField("subscribed")

            process.proc.send_signal(signal.SIGTERM)

            async def not_serving() -> bool:
                replies = [
                    await health.Check(health_pb2.HealthCheckRequest(service=name))
                    for name in ("", SERVICE)
                ]
                return all(r.status == health_pb2.HealthCheckResponse.NOT_SERVING for r in replies)

            await eventually(not_serving, what="health NOT_SERVING after SIGTERM")
            # Still serving: a unary call works, and the open stream gets the task.
            created = await stub.CreateTask(pb.CreateTaskRequest(task_type="lark"))
            pushed = await stream.read()
            assert [t.task_id for t in pushed.tasks.tasks] == [created.task.task_id]

            process.proc.send_signal(signal.SIGTERM)  # ends the wait
            assert await stream.read() == grpc.aio.EOF
            assert await stream.code() == grpc.StatusCode.OK
            await requests.put(None)
        assert process.finish(START_TIMEOUT) == 0
    stderr = process.lines["stderr"]
    assert any("closed; 1 un-started tasks released" in line for line in stderr), stderr


def test_grpcurl_works_without_proto_files(served: tuple[Process, str], tmp_path: Path) -> None:
    _, address = served

    def grpcurl(*args: str) -> str:
        result = subprocess.run(
            [str(GRPCURL), "-plaintext", *args],
            cwd=tmp_path,  # no .proto files here: reflection only
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    listed = grpcurl(address, "list").split()
    assert SERVICE in listed
    assert "grpc.reflection.v1.ServerReflection" in listed
    assert "rpc HoldTasks" in grpcurl(address, "describe", SERVICE)
    # v1's descriptor is served too (this grpcurl asks over v1alpha).
    assert "rpc ServerReflectionInfo" in grpcurl(
        address, "describe", "grpc.reflection.v1.ServerReflection"
    )
    pong = json.loads(grpcurl("-d", "{}", address, f"{SERVICE}/Ping"))
    assert pong["message"] == "pong"
    # grpcurl 1.8 prints proto field names; later versions print lowerCamelCase.
    server_time = int(pong.get("server_time", pong.get("serverTime", 0)))
    assert abs(server_time - time.time()) < 24 * 3600  # the system clock, in seconds


def assert_config_refused(result: subprocess.CompletedProcess[str], names: list[str]) -> None:
    """Exit code 2, before serving, with a one-line message naming the key."""
    assert result.returncode == 2, result.stderr
    assert "configuration error" in result.stderr
    for name in names:
        assert name in result.stderr
    assert "listening" not in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"ASYNCFLOW_SERVER_PORT": "notanumber"}, ["server.port", "ASYNCFLOW_SERVER_PORT"]),
        ({"ASYNCFLOW_SERVER_PORT": "70000"}, ["server.port", "70000"]),
        ({"ASYNCFLOW_STORE_BACKEND": "oracle"}, ["store.backend", "oracle"]),
        ({"ASYNCFLOW_GOVERNANCE_ENABLED": "maybe"}, ["governance.enabled", "maybe"]),
    ],
    ids=["port-not-int", "port-range", "backend", "bool"],
)
def test_bad_environment_exits_2(tmp_path: Path, env: dict[str, str], names: list[str]) -> None:
    result = run_cli(tmp_path, "serve", **env)
    assert_config_refused(result, names)
    assert list(tmp_path.iterdir()) == []  # no database was created


@pytest.mark.parametrize(
    ("toml", "names"),
    [
        ("[server]\nprot = 50051\n", ["server.prot", "unknown key"]),
        ('[store]\nbackend = "oracle"\n', ["store.backend", "oracle"]),
        ("[stor]\nbackend = 'sqlite'\n", ["stor", "unknown section"]),
        ("[server]\nport = true\n", ["server.port", "expected int"]),
        ("[server\nport = 1\n", ["not valid TOML"]),
        ('[log]\nlevel = "LOUD"\n', ["log.level", "LOUD"]),
    ],
    ids=["unknown-key", "backend", "unknown-section", "wrong-type", "syntax", "choice"],
)
@pytest.mark.parametrize("how", ["--config", "./config.toml"])
def test_bad_config_file_exits_2(tmp_path: Path, toml: str, names: list[str], how: str) -> None:
    if how == "--config":
        config_file = tmp_path / "bad.toml"
        args = ["serve", "--config", str(config_file)]
    else:
        config_file = tmp_path / "config.toml"  # picked up from the working directory
        args = ["serve"]
    config_file.write_text(toml)
    result = run_cli(tmp_path, *args)
    assert_config_refused(result, names)
    assert list(tmp_path.iterdir()) == [config_file]  # no database was created


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "serve", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_port_in_use_exits_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            tmp_path,
            "serve",
            ASYNCFLOW_SERVER_PORT=str(port),
            ASYNCFLOW_STORE_SQLITE_PATH=str(tmp_path / "a.db"),
        )
    assert result.returncode == 2, result.stderr
    assert "server.port" in result.stderr
    assert "listening" not in result.stdout


def test_migrate_applies_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    first = run_cli(tmp_path, "migrate", ASYNCFLOW_STORE_SQLITE_PATH=str(path))
    assert first.returncode == 0, first.stderr
    applied = first.stdout.strip()
    assert applied.startswith("applied: "), applied
    assert "0001_init" in applied
    assert "nothing" not in applied
    assert path.is_file()

    second = run_cli(tmp_path, "migrate", ASYNCFLOW_STORE_SQLITE_PATH=str(path))
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "applied: nothing (schema is current)"


def test_migrate_uses_the_config_file_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[store]\nsqlite_path = "state/x.db"\n')
    result = run_cli(tmp_path, "migrate")
    assert result.returncode == 0, result.stderr
    assert "0001_init" in result.stdout
    assert (tmp_path / "state" / "x.db").is_file()


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli(tmp_path)
    assert result.returncode == 2
    assert "usage: asyncflow" in result.stderr
