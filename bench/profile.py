"""Where the CPU goes: a py-spy sampling profile of the server or a worker under load.

    python -m bench.profile create|get|bulk|drain [--seconds 15] [--backend mysql|sqlite]

create/get: a real `asyncflow serve` under h2load (bench.rpc's load, 8 x 16
calls in flight) while py-spy samples it. bulk: one `Client` in this process
sends create_many batches of 1,000 one after the other (item 3) while py-spy
samples the server and this process. drain: a 20,000-task backlog drained
by two `asyncflow worker` processes while py-spy samples the server and one
worker. Prints, per process, the share of the busy samples (idle waiting in
the event loop's select is not sampled) spent in each layer and in the
functions that cost the most, inclusive and self. Writes py-spy's collapsed
stacks next to it (--out) for a flame graph. py-spy is installed from PyPI
when missing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from asyncflow.client import Client, TaskSpec
from bench import rpc
from bench.common import scratch, server_process
from bench.drain import backlog, workers

# Layers, by the file a frame runs in (first match wins, checked in this order).
LAYERS = [
    ("asyncflow store (SQL building, rows)", r"asyncflow/store/"),
    ("asyncflow cache (Redis codec, scripts)", r"asyncflow/cache/"),
    ("asyncflow server (servicer, session, dispatch, relay)", r"asyncflow/server/"),
    ("asyncflow core", r"asyncflow/core/"),
    ("asyncflow SDK", r"asyncflow/(_sdk/|worker\.py|client\.py)"),
    ("aiomysql + pymysql (MySQL protocol)", r"(aiomysql|pymysql)/"),
    ("redis-py", r"redis/"),
    ("sqlite3", r"sqlite3|asyncflow/store/sqlite"),
    ("protobuf", r"google/protobuf"),
    ("grpc (Python side of grpc.aio)", r"grpc/|grpc_|cygrpc"),
    ("asyncio", r"asyncio/"),
]


# Frames on nearly every stack (the loop, the thread, the entry point): no information.
PLUMBING = r"\((asyncio/|threading\.py|asyncflow/cli\.py|asyncflow\)|<module>)"


def ensure_py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if Path(found).exists():
        return found
    print("installing py-spy...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    return str(Path(sys.executable).with_name("py-spy"))


NATIVE = False
"""--native: C and Cython frames too (grpc's core); py-spy then pauses the process
for each sample, which slows it, so shares are less faithful."""


def record(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` for `seconds` without pausing it, collapsed stacks to `out`."""
    command = [ensure_py_spy(), "record", "--pid", str(pid), "--duration", str(seconds),
               "--rate", "250", "--format", "raw", "-o", str(out)]  # fmt: skip
    command += ["--native"] if NATIVE else ["--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summary(stacks: Path, title: str, top: int = 30) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        path, _, count = line.rpartition(" ")
        if not path:
            continue
        samples = int(count)
        total += samples
        frames = [re.sub(r":\d+\)$", ")", f) for f in path.split(";")]
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
        seen = {name for name, pattern in LAYERS for f in frames if re.search(pattern, f)}
        for name in seen:
            layers[name] += samples
    lines = [f"== {title}: {total:,} busy samples"]
    lines += ["-- layers (inclusive: a sample counts for each layer on its stack)"]
    lines += [f"{100 * n / total:5.1f} %  {name}" for name, n in layers.most_common()]
    lines += ["-- functions, inclusive (the event loop's own frames left out)"]
    shown = [(f, n) for f, n in inclusive.most_common() if not re.search(PLUMBING, f)][:top]
    lines += [f"{100 * n / total:5.1f} %  {name}" for name, n in shown]
    lines += ["-- functions, self"]
    lines += [f"{100 * n / total:5.1f} %  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


async def under_h2load(args: argparse.Namespace, database: str, out: Path) -> str:
    method = {"create": "CreateTask", "get": "GetTask"}[args.what]
    with server_process(database, f"bench:{uuid.uuid4().hex[:8]}:", args.backend) as (
        address,
        pid,
    ):
        files = await rpc.prepare(address, out.parent, 200)
        load = rpc.options(["--duration", str(args.seconds + 4)])
        h2load = asyncio.create_task(
            asyncio.to_thread(rpc.h2load, load, address, method, files[f"{method}.req"], pid)
        )
        await asyncio.sleep(2)  # the load is up before the samples start
        spy = record(pid, args.seconds, out)
        await asyncio.to_thread(spy.wait)
        done = await h2load
    print(f"{method}: {done.calls_per_second:,.0f} calls/s while sampled")
    return summary(out, f"server under {method}, {args.backend}")


async def create_many_for(address: str, seconds: float) -> int:
    """create_many batches of 1,000, one after the other, for `seconds`; tasks created."""
    async with Client(address) as client:
        await client.register_type("bulk")
        created = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await client.create_many([TaskSpec("bulk") for _ in range(1000)])
            created += 1000
        return created


def bulk(args: argparse.Namespace, database: str, out: Path) -> str:
    with server_process(database, f"bench:{uuid.uuid4().hex[:8]}:", args.backend) as (
        address,
        pid,
    ):
        client_out = out.with_name("client.txt")
        spies = [record(pid, args.seconds, out), record(os.getpid(), args.seconds, client_out)]
        created = asyncio.run(create_many_for(address, args.seconds + 1))
        for spy in spies:
            spy.wait()
    print(f"create_many: {created:,} tasks in about {args.seconds + 1} s while sampled")
    return "\n\n".join([
        summary(out, f"server under create_many, {args.backend}"),
        summary(client_out, "the client (this process) sending create_many"),
    ])  # fmt: skip


def drain(args: argparse.Namespace, database: str, out: Path) -> str:
    with server_process(database, f"bench:{uuid.uuid4().hex[:8]}:", args.backend) as (
        address,
        pid,
    ):
        asyncio.run(backlog(address, "drain", 20_000))
        with workers(address, "drain") as started:
            time.sleep(2)
            worker_out = out.with_name("worker.txt")
            spies = [
                record(pid, args.seconds, out),
                record(started[0].pid, args.seconds, worker_out),
            ]
            for spy in spies:
                spy.wait()
    return "\n\n".join([
        summary(out, f"server during a drain, {args.backend}"),
        summary(worker_out, "one `asyncflow worker` process during the drain"),
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=("create", "get", "bulk", "drain"))
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--backend", choices=("mysql", "sqlite"), default="mysql")
    parser.add_argument("--out", type=Path, help="directory for the collapsed stacks")
    parser.add_argument("--native", action="store_true", help="C/Cython frames too (slower)")
    args = parser.parse_args()
    global NATIVE
    NATIVE = args.native
    with tempfile.TemporaryDirectory(prefix="asyncflow-profile-") as tmp:
        where = args.out or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        out = where / "server.txt"
        with scratch(args.backend) as database:
            if args.what == "drain":
                print(drain(args, database, out))
            elif args.what == "bulk":
                print(bulk(args, database, out))
            else:
                print(asyncio.run(under_h2load(args, database, out)))


if __name__ == "__main__":
    main()
