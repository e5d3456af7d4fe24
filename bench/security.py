"""What security costs: GetTask and CreateTask calls/s with auth off, with a token,
with a token and a rate limit, and over TLS with a token, in the same run.

    python -m bench.security [--duration 5] [--rounds 2] [--connections 8] [--streams 16]

Each variant is a real `asyncflow serve` on SQLite (the store is the same for
all; reads come from its in-process cache), loaded in turn by h2load (see
bench/rpc.py) with the same request; the ratio to "off" in the same round is
the number to read. The rate limit is set far above the load, so that it only
costs its bookkeeping. Every run is checked as bench.rpc checks it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import trustme

from asyncflow.server.auth.tokens import new_token, token_entry
from asyncflow.v1 import task_service_pb2 as pb
from asyncflow.v1 import task_service_pb2_grpc as pb_grpc
from bench.common import server_process
from bench.rpc import TYPE, check, framed, h2load

VARIANTS = ("off", "token", "token+quota", "tls+token")


@contextmanager
def variant(name: str, work: Path, token: str, ca: trustme.CA) -> Iterator[tuple[str, int]]:
    settings: dict[str, str] = {}
    if name != "off":
        tokens = work / "tokens.toml"
        tokens.write_text(token_entry("bench", token, ["admin"]))
        settings |= {"ASYNCFLOW_AUTH_ENABLED": "true", "ASYNCFLOW_AUTH_TOKENS_FILE": str(tokens)}
    if name == "token+quota":
        settings["ASYNCFLOW_QUOTA_CALLS_PER_SECOND"] = "1000000"
    if name.startswith("tls"):
        cert = ca.issue_cert("localhost", "127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(str(work / f"{name}.pem"))
        cert.private_key_pem.write_to_path(str(work / f"{name}-key.pem"))
        settings |= {"ASYNCFLOW_SERVER_TLS_CERT_FILE": str(work / f"{name}.pem"),
                     "ASYNCFLOW_SERVER_TLS_KEY_FILE": str(work / f"{name}-key.pem")}  # fmt: skip
    with server_process(str(work / f"{name}.db"), "", "sqlite", settings=settings) as started:
        yield started


def credentials(name: str, token: str, ca: trustme.CA) -> grpc.ChannelCredentials | None:
    if name == "off":
        return None
    transport = (
        grpc.ssl_channel_credentials(ca.cert_pem.bytes()) if name.startswith("tls")
        else grpc.local_channel_credentials()
    )  # fmt: skip
    return grpc.composite_channel_credentials(transport, grpc.access_token_call_credentials(token))


async def prepare(address: str, creds: grpc.ChannelCredentials | None, work: Path,
                  name: str) -> dict[str, Path]:  # fmt: skip
    target = f"localhost:{address.rpartition(':')[2]}"
    channel = (grpc.aio.secure_channel(target, creds) if creds
               else grpc.aio.insecure_channel(target))  # fmt: skip
    async with channel:
        stub = pb_grpc.TaskServiceStub(channel)
        await stub.RegisterTaskType(pb.RegisterTaskTypeRequest(task_type=TYPE))
        create = pb.CreateTaskRequest(task_type=TYPE, user_id="bench", context="x" * 200)
        created = await stub.CreateTask(create)
        get = pb.GetTaskRequest(task_id=created.task.task_id)
        got = await stub.GetTask(get)
    files = {
        f"{name}.CreateTask.req": framed(create.SerializeToString()),
        f"{name}.GetTask.req": framed(get.SerializeToString()),
        "CreateTask.reply": created.SerializeToString(),
        "GetTask.reply": got.SerializeToString(),
    }
    for file, content in files.items():
        (work / file).write_bytes(content)
    return {file: work / file for file in files}


async def run(args: argparse.Namespace) -> None:
    token, ca = new_token(), trustme.CA()
    with tempfile.TemporaryDirectory(prefix="asyncflow-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        servers = {}
        for name in VARIANTS:
            address, pid = stack.enter_context(variant(name, work, token, ca))
            files = await prepare(address, credentials(name, token, ca), work, name)
            servers[name] = (f"localhost:{address.rpartition(':')[2]}", pid, files)
        print(f"{args.connections} connections x {args.streams} streams, {args.duration} s"
              " per run, 200-byte contexts, SQLite")  # fmt: skip
        print(f"{'method':<11} " + " ".join(f"{name:>16}" for name in VARIANTS))
        for method in args.methods:
            ratios: list[list[float]] = []
            for _ in range(args.rounds):
                rates = []
                for name in VARIANTS:
                    address, pid, files = servers[name]
                    headers = () if name == "off" else (f"authorization: Bearer {token}",)
                    scheme = "https" if name.startswith("tls") else "http"
                    load = h2load(args, address, method, files[f"{name}.{method}.req"], pid,
                                  headers, scheme)  # fmt: skip
                    check(method, load, files, None, args.connections * args.streams)
                    rates.append(load.calls_per_second)
                shown = (f"{rate:>8,.0f} ({rate / rates[0]:>4.0%})" for rate in rates)
                print(f"{method:<11} " + " ".join(shown), flush=True)
                ratios.append([rate / rates[0] for rate in rates])
            medians = (statistics.median(column) for column in zip(*ratios, strict=True))
            print(f"{'  median':<11} " + " ".join(f"{m:>16.0%}" for m in medians), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=5, help="seconds per run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--streams", type=int, default=16, help="calls in flight per connection")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=["GetTask", "CreateTask"],
                        choices=("CreateTask", "GetTask"))  # fmt: skip
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
