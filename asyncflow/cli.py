"""The `asyncflow` command: serve, migrate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from asyncflow.config import Config, load_config
from asyncflow.errors import ConfigError, Unavailable
from asyncflow.logs import setup_logging
from asyncflow.server.app import AsyncflowServer, open_store

log = logging.getLogger("asyncflow")

DEFAULT_CONFIG = "config.toml"


def _config(path: str | None) -> Config:
    """--config PATH, else ./config.toml when present, else built-in defaults."""
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = DEFAULT_CONFIG
    return load_config(path)


async def serve(config: Config) -> None:
    server = await AsyncflowServer.start(config)
    print(f"asyncflow listening on {config.server.host}:{server.port}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("signal received: draining for up to %.0fs", config.server.grace_seconds)
    await server.stop(config.server.grace_seconds)


async def migrate(config: Config) -> None:
    store = await open_store(config.store)
    try:
        applied = await store.migrate()
    finally:
        await store.close()
    print("applied: " + (", ".join(applied) or "nothing (schema is current)"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asyncflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("serve", "run the gRPC server"), ("migrate", "apply schema migrations")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--config", help=f"TOML file (default: ./{DEFAULT_CONFIG} if present)")
    args = parser.parse_args(argv)
    try:
        config = _config(args.config)
        setup_logging(config.log)
        asyncio.run(serve(config) if args.command == "serve" else migrate(config))
    except ConfigError as exc:
        print(f"asyncflow: configuration error: {exc}", file=sys.stderr)
        return 2
    except Unavailable as exc:
        print(f"asyncflow: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
