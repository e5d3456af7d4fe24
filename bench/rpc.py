"""Calls/s of CreateTask and GetTask under load, as a ratio to an echo servicer in the same run.

    python -m bench.rpc [--backend mysql|sqlite] [--duration 10] [--connections 8] [--streams 16]
                        [--processes N [N ...]]

The load comes from h2load (Debian's nghttp2-client, written in C, so the client
never caps the server), speaking gRPC with a length-prefixed body file. Each
method runs against the echo servicer (bench/echo.py: decodes the request and
answers a canned reply of the real size) and against a real `asyncflow serve`,
alternately, `--rounds` times; the ratio of the two is what the machine's noise
cannot fake. `--processes 1 2` runs a one-process server and `serve --processes 2`
(MariaDB) side by side, loaded in turn after each echo run: the kernel spreads
h2load's connections over a server's processes, and its CPU per call is summed
over them. h2load counts HTTP 200 even when grpc-status is an error, so every
run is checked: the tasks created are counted in the store afterwards, and a
GetTask run must have received one full reply per call.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc

from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc
from bench.common import (
    CHILD_URLS,
    clean_env,
    cpu_seconds,
    listening,
    metric_sums,
    scratch,
    server_process,
)

SERVICE = pb.DESCRIPTOR.services_by_name["TaskService"].full_name
TYPE = "bench"


@dataclass(frozen=True)
class Load:
    calls_per_second: float
    succeeded: int
    data_bytes: int
    server_cpu_ms_per_call: float


def framed(message: bytes) -> bytes:
    """A gRPC message on the wire: not compressed, 4-byte big-endian length."""
    return struct.pack(">BI", 0, len(message)) + message


def ensure_h2load() -> str:
    found = shutil.which("h2load")
    if found:
        return found
    print("installing h2load (nghttp2-client)...", flush=True)
    install = ["apt-get", "install", "-y", "-q", "nghttp2-client"]
    if subprocess.run(install, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(install, check=True, stdout=subprocess.DEVNULL)
    return shutil.which("h2load") or "h2load"


def h2load(args: argparse.Namespace, address: str, method: str, body: Path, pid: int,
           headers: tuple[str, ...] = (), scheme: str = "http") -> Load:  # fmt: skip
    command = [
        ensure_h2load(), "-D", str(args.duration),
        "-c", str(args.connections), "-m", str(args.streams), "-t", "1",
        "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
        *(option for header in headers for option in ("-H", header)),
        f"{scheme}://{address}/{SERVICE}/{method}",
    ]  # fmt: skip
    before = cpu_seconds(pid)
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    cpu = cpu_seconds(pid) - before
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    done = re.search(r"requests: .* (\d+) succeeded", out)
    data = re.search(r"\((\d+)\) data", out)
    if not (rate and done and data):
        raise RuntimeError(f"cannot read h2load's output:\n{out}")
    succeeded = int(done[1])
    return Load(float(rate[1]), succeeded, int(data[1]), cpu * 1000 / max(succeeded, 1))


async def prepare(address: str, work: Path, context_bytes: int) -> dict[str, Path]:
    """Register the type, capture real replies, write request bodies and reply files."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TaskServiceStub(channel)
        await stub.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type=TYPE))
        create = pb.CreateTaskRequest(task_type=TYPE, user_id="bench", context="x" * context_bytes)
        created = await stub.CreateTask(create)
        get = pb.GetTaskRequest(task_id=created.task.task_id)
        got = await stub.GetTask(get)
    files = {
        "CreateTask.req": framed(create.SerializeToString()),
        "GetTask.req": framed(get.SerializeToString()),
        "CreateTask.reply": created.SerializeToString(),
        "GetTask.reply": got.SerializeToString(),
    }
    for name, content in files.items():
        (work / name).write_bytes(content)
    return {name: work / name for name in files}


async def total_tasks(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await pb_grpc.TaskServiceStub(channel).CountTasks(
            pb.CountTasksRequest(task_type=TYPE)
        )
    return reply.total


def check(method: str, load: Load, files: dict[str, Path], created: int | None,
          in_flight: int) -> None:  # fmt: skip
    """Refuse a run in which some calls failed behind an HTTP 200. Calls still in
    flight when h2load's clock stops are done by the server but not counted."""
    counted = created is None or load.succeeded <= created <= load.succeeded + in_flight
    if method == "CreateTask" and not counted:
        raise RuntimeError(f"h2load counted {load.succeeded} creates, the store has {created}")
    reply = files[f"{method}.reply"].stat().st_size + 5
    if load.data_bytes < load.succeeded * reply:
        raise RuntimeError(f"{method}: {load.data_bytes} bytes for {load.succeeded} replies")


@dataclass(frozen=True)
class Round:
    """One round of one method: the echo servicer's load, then the server's."""

    method: str
    echo: Load
    asyncflow: Load
    processes: int = 1
    """`serve --processes N`."""

    @property
    def ratio(self) -> float:
        return self.asyncflow.calls_per_second / self.echo.calls_per_second


async def run(args: argparse.Namespace, database: str) -> list[Round]:
    """Every round of every method in args.methods (see main for the options). With
    several --processes, one server each (one database, one cache: replicas), all
    loaded in turn after the same echo run, so they compare in the same minute."""
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="asyncflow-bench-") as tmp, ExitStack() as stack:
        servers = [
            (n, *stack.enter_context(server_process(database, prefix, args.backend, processes=n)))
            for n in args.processes
        ]
        address = servers[0][1]
        work = Path(tmp)
        files = await prepare(address, work, args.context_bytes)
        echo, echo_address = listening(
            [sys.executable, "-m", "bench.echo",
             "--reply", f"CreateTask={files['CreateTask.reply']}",
             "--reply", f"GetTask={files['GetTask.reply']}"],
            clean_env(), "echo listening on ",
        )  # fmt: skip
        try:
            print(f"{args.backend}: {args.connections} connections x {args.streams} streams,"
                  f" {args.duration} s per run, {args.context_bytes}-byte contexts")  # fmt: skip
            print(f"{'method':<11} {'echo/s':>9} {'processes':>9} {'asyncflow/s':>12} {'ratio':>6}"
                  f" {'server CPU ms/call':>19}")  # fmt: skip
            in_flight = args.connections * args.streams
            for method in args.methods:
                body = files[f"{method}.req"]
                for _ in range(args.rounds):
                    baseline = h2load(args, echo_address, method, body, echo.pid)
                    check(method, baseline, files, None, in_flight)
                    for processes, server, pid in servers:
                        urls = CHILD_URLS.get(pid, [])
                        calls = metric_sums(urls, "asyncflow_rpc_handled_total", method=method)
                        before = await total_tasks(address)
                        load = h2load(args, server, method, body, pid)
                        after = await total_tasks(address)
                        check(method, load, files, after - before, in_flight)
                        rounds.append(Round(method, baseline, load, processes))
                        # How the kernel spread h2load's connections: calls per process.
                        calls = [
                            b - a
                            for a, b in zip(
                                calls,
                                metric_sums(urls, "asyncflow_rpc_handled_total", method=method),
                                strict=True,
                            )
                        ]
                        split = "/".join(f"{c / sum(calls):.0%}" for c in calls) if urls else ""
                        print(f"{method:<11} {baseline.calls_per_second:>9,.0f} {processes:>9}"
                              f" {load.calls_per_second:>12,.0f} {rounds[-1].ratio:>6.0%}"
                              f" {load.server_cpu_ms_per_call:>9.3f} (echo"
                              f" {baseline.server_cpu_ms_per_call:.3f}) {split}",
                              flush=True)  # fmt: skip
        finally:
            echo.terminate()
            echo.wait(10)
            assert echo.stdout is not None
            echo.stdout.close()
    return rounds


def measure(args: argparse.Namespace) -> list[Round]:
    """run() on a scratch MariaDB database or a temporary SQLite file."""
    with scratch(args.backend) as database:
        return asyncio.run(run(args, database))


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("mysql", "sqlite"), default="mysql")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--streams", type=int, default=16, help="calls in flight per connection")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", type=int, nargs="+", default=[1],
                        help="serve --processes N; several: a server each, in turn")  # fmt: skip
    parser.add_argument("--context-bytes", type=int, default=200)
    parser.add_argument("--methods", nargs="+", default=["CreateTask", "GetTask"],
                        choices=("CreateTask", "GetTask"))  # fmt: skip
    return parser.parse_args(argv)


def main() -> None:
    measure(options())


if __name__ == "__main__":
    main()
