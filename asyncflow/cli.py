"""The `asyncflow` command: serve, migrate, worker, and the operator commands
task, type and schedule (asyncflow._cli.ops).

`serve` and `migrate` import the server when they run, so that `asyncflow
worker` and the operator commands work with the SDK alone (`pip install
asyncflow`, without the `server` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from asyncflow._cli import ops
from asyncflow._cli.security import add_tls_arguments, add_token_command, create_token, tls_settings
from asyncflow._sdk.channel import grpc_target
from asyncflow._sdk.credentials import channel_credentials
from asyncflow._sdk.extras import needs_server
from asyncflow.config import Config, LogConfig, check_processes, load_config
from asyncflow.errors import AsyncflowError, ConfigError
from asyncflow.logs import setup_logging
from asyncflow.worker import Worker

if TYPE_CHECKING:
    from asyncflow.server.processes import ChildRole

log = logging.getLogger("asyncflow")

DEFAULT_CONFIG = "config.toml"


def _config_path(path: str | None) -> str | None:
    """--config PATH, else ./config.toml when present, else None (built-in defaults)."""
    if path is None and Path(DEFAULT_CONFIG).is_file():
        return str(Path(DEFAULT_CONFIG).resolve())
    return path


async def serve(config: Config, role: ChildRole | None = None) -> None:
    """One server process; `role`: it is one of `serve --processes N`'s children."""
    with needs_server("asyncflow serve"):
        from asyncflow.server.app import AsyncflowServer
    server = await AsyncflowServer.start(config, reuse_port=role is not None)
    if role is not None:  # the parent prints the address once every child listens
        role.ready(server.http.url if server.http is not None else "")
    else:
        print(f"asyncflow listening on {config.server.host}:{server.port}", flush=True)
        if server.http is not None:
            print(f"asyncflow dashboard at {server.http.url}/ui", flush=True)
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    # SIGHUP: new TLS certificates and tokens, without a restart.
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    await signalled.wait()
    signalled.clear()
    # Load balancers and probes need a moment to see NOT_SERVING and route new
    # calls elsewhere; until then this replica serves as usual. A second signal
    # ends the wait (Ctrl-C twice when running by hand).
    delay, grace = config.server.shutdown_delay_seconds, config.server.grace_seconds
    log.info(
        "signal received: health is NOT_SERVING; streams end in %gs (or at the next"
        " signal), then calls get up to %gs to finish",
        delay,
        grace,
    )
    await server.announce_shutdown()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(signalled.wait(), timeout=delay)
    log.info("draining: ending streams, then in-flight calls")
    await server.stop(grace)


async def migrate(config: Config) -> None:
    with needs_server("asyncflow migrate"):
        from asyncflow.server.app import open_store
    store = await open_store(config.store)
    try:
        applied = await store.migrate()
    finally:
        await store.close()
    print("applied: " + (", ".join(applied) or "nothing (schema is current)"))


def load_worker(target: str, args: argparse.Namespace) -> Worker:
    """`path/to/file.py:attr` or `package.module:attr`; attr is a Worker or a
    mapping of task type to handler."""
    where, _, attr = target.partition(":")
    if not attr:
        raise ConfigError(f"worker: expected MODULE:ATTR or FILE.py:ATTR, got {target!r}")
    if where.endswith(".py"):
        spec = importlib.util.spec_from_file_location(Path(where).stem, where)
        if spec is None or spec.loader is None:
            raise ConfigError(f"worker: cannot load {where}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ConfigError(
                f"worker: cannot import {where!r} ({exc}); for a module in the current"
                " directory give its file (path/to/file.py:ATTR) or set PYTHONPATH=."
            ) from None
    found = getattr(module, attr, None)
    if isinstance(found, Worker):
        worker = found
    elif isinstance(found, Mapping):
        worker = Worker(handlers=found)
    else:
        raise ConfigError(f"worker: {target} is neither a Worker nor a mapping of handlers")
    if args.address:
        worker.address = args.address
    if args.streams:
        worker.streams = args.streams
    keepalive = {"keepalive_time": args.keepalive, "keepalive_timeout": args.keepalive_timeout}
    try:
        worker.settings = replace(
            worker.settings,
            **{name: value for name, value in keepalive.items() if value},
            **tls_settings(args),
        )
        # A malformed list, or a token for a plaintext remote address, fails here.
        channel_credentials(grpc_target(worker.address), worker.settings)
    except ValueError as exc:
        raise ConfigError(f"worker: {exc}") from None
    if args.concurrency:
        worker.concurrency = args.concurrency
    if args.prefetch is not None:
        worker.prefetch = args.prefetch
    if args.poll:
        worker.stream = False
    return worker


async def work(worker: Worker, grace: float) -> None:
    runner = asyncio.create_task(worker.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.stop(grace)))
    print(f"asyncflow worker for {', '.join(worker.task_types)} on {worker.address}", flush=True)
    await runner


def run_serve(args: argparse.Namespace) -> int:
    """One process, one of N children, or the parent that supervises N."""
    from asyncflow.server.processes import ChildRole, Supervisor

    path = _config_path(args.config)
    config = load_config(path)
    if args.child is not None:
        role = ChildRole.parse(args.child)
        role.follow_parent()
        setup_logging(config.log, process=role.index)
        asyncio.run(serve(config, role))
        return 0
    if args.processes is not None:
        config = replace(config, server=replace(config.server, processes=args.processes))
        check_processes(config)
    setup_logging(config.log)
    if config.server.processes == 1:
        asyncio.run(serve(config))
        return 0
    return asyncio.run(Supervisor(config, path).run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asyncflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("serve", "run the gRPC server"), ("migrate", "apply schema migrations")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--config", help=f"TOML file (default: ./{DEFAULT_CONFIG} if present)")
        if name == "serve":
            sub.add_argument(
                "--processes", type=int, help="server processes on one port (server.processes)"
            )
            # Set by the parent of `serve --processes N` for each of its children.
            sub.add_argument("--child", help=argparse.SUPPRESS)
    worker = commands.add_parser("worker", help="run a worker: asyncflow worker MODULE:ATTR")
    worker.add_argument("target", help="package.module:attr or path/file.py:attr")
    worker.add_argument(
        "--address",
        default=os.environ.get("ASYNCFLOW_ADDRESS", ""),
        help="host:port, host1:port,host2:port (replicas) or a gRPC target (dns:///name:port)",
    )
    worker.add_argument("--streams", type=int, default=0, help="streams (default: one a replica)")
    worker.add_argument("--keepalive", type=float, help="seconds between keepalive pings (30)")
    worker.add_argument("--keepalive-timeout", type=float, help="seconds to answer a ping (10)")
    worker.add_argument("--concurrency", type=int, default=0)
    worker.add_argument("--prefetch", type=int, default=None, help="tasks held beyond concurrency")
    worker.add_argument("--grace", type=float, default=30.0, help="seconds to finish on SIGTERM")
    worker.add_argument("--poll", action="store_true", help="unary polling instead of the stream")
    worker.add_argument("--log-level", default="INFO")
    add_tls_arguments(worker)
    ops.add_commands(commands)
    add_token_command(commands)
    args = parser.parse_args(argv)
    if args.command in ops.COMMANDS:
        return ops.run(args, parser)
    if args.command == "token":
        return create_token(args)
    try:
        if args.command == "worker":
            loaded = load_worker(args.target, args)
            setup_logging(LogConfig(level=args.log_level.upper()))
            asyncio.run(work(loaded, args.grace))
        elif args.command == "migrate":
            config = load_config(_config_path(args.config))
            setup_logging(config.log)
            asyncio.run(migrate(config))
        else:
            return run_serve(args)
    except ConfigError as exc:  # exit 2: fix the command or the configuration
        print(f"asyncflow: configuration error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # exit 2: serve/migrate without the server extra
        print(f"asyncflow: {exc}", file=sys.stderr)
        return 2
    except AsyncflowError as exc:  # exit 1: a service (database, server) failed
        print(f"asyncflow {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
