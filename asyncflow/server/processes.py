"""`asyncflow serve --processes N`: N server processes on one gRPC port, supervised.

One Python process runs one event loop on one core; several processes use
several. Each child is a full replica (its own store pool, cache, wake-up
relay and governance loops) on the MariaDB and Redis they share, exactly as
separate `asyncflow serve` replicas would be: wake-ups and cancel notices cross
between them over Redis pub/sub and each governance loop runs on one of them
under its Redis lock. They listen on the same port with SO_REUSEPORT, so the
kernel spreads new connections (not calls: an HTTP/2 connection stays on the
process that accepted it) over them.

The parent never imports gRPC and serves nothing. It picks the port (a
concrete one when `server.port` is 0) and keeps it bound, but not listening,
with SO_REUSEPORT, so that no other program takes it while a child restarts.
It starts the children with `asyncflow serve --child ...`, waits until each
listens, prints the same `asyncflow listening on HOST:PORT` line as a single
process, forwards SIGTERM, SIGINT and SIGHUP to every child (each one drains
as a single server does), restarts a child that dies while nobody asked it to
stop (with a back-off), and exits once every child has exited.

The HTTP side: child i serves it on `http.port + i` (each its own free port
when http.port is 0), so that /metrics describes one process and Prometheus
scrapes each one as a target of its own; the parent prints every address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

from asyncflow.config import Config
from asyncflow.errors import ConfigError

log = logging.getLogger(__name__)

RESTART_DELAY_FIRST = 1.0
RESTART_DELAY_MAX = 30.0
STEADY_SECONDS = 60.0
"""A child that ran this long before it died is restarted after the first delay again."""
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
KILL_MARGIN_SECONDS = 5.0
"""After a stop signal, a child still running past its own drain time
(shutdown_delay + 2 x grace) plus this is killed."""
CLEAN_EXITS = (0, -signal.SIGTERM, -signal.SIGINT)
"""How a child that was told to stop may end (killed by the signal before its
handlers were installed, when it was still starting)."""


@dataclass(frozen=True)
class ChildRole:
    """What `serve --child INDEX:READY_FD:PARENT_PID` tells a child about itself."""

    index: int
    ready_fd: int
    parent_pid: int

    @classmethod
    def parse(cls, text: str) -> ChildRole:
        index, ready_fd, parent_pid = (int(part) for part in text.split(":"))
        return cls(index, ready_fd, parent_pid)

    def argument(self) -> str:
        return f"{self.index}:{self.ready_fd}:{self.parent_pid}"

    def follow_parent(self) -> None:
        """SIGTERM (a graceful drain) when the parent dies, whatever killed it, so
        that no child outlives its supervisor; already dead: exit now."""
        if sys.platform == "linux":
            pr_set_pdeathsig = 1
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != self.parent_pid:
            raise SystemExit("asyncflow: the supervising process is gone")

    def ready(self, http_url: str) -> None:
        """Tell the parent this process listens (the one line it waits for)."""
        with os.fdopen(self.ready_fd, "w") as pipe:
            pipe.write(f"{http_url or '-'}\n")


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to host:port with SO_REUSEPORT, port 0 made
    concrete. It receives no connection; it keeps the port ours across restarts.

    A first bind without SO_REUSEPORT fails when anything else holds the port,
    even another reuse-port group: N processes share a port on purpose, never
    by accident with a stranger."""
    family, kind, proto, _, where = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(where)
        except OSError as exc:
            raise ConfigError(f"server.port: cannot listen on {host}:{port}: {exc}") from None
        chosen = probe.getsockname()[1]
    reserved = socket.socket(family, kind, proto)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reserved.bind((where[0], chosen, *where[2:]))
    except OSError as exc:  # taken in between
        reserved.close()
        raise ConfigError(f"server.port: cannot listen on {host}:{chosen}: {exc}") from None
    return reserved


@dataclass
class Child:
    """One server process slot: the process now in it, and its restart state."""

    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    http_url: str = ""
    delay: float = RESTART_DELAY_FIRST


class Supervisor:
    """The parent of `serve --processes N`."""

    def __init__(self, config: Config, config_path: str | None) -> None:
        self.config = config
        self.config_path = config_path
        self.children = [Child(index) for index in range(config.server.processes)]
        self.stopping = asyncio.Event()
        self.port = 0
        self.kill_margin = KILL_MARGIN_SECONDS
        self._killer: asyncio.TimerHandle | None = None

    async def run(self) -> int:
        """Serve until told to stop; the exit status of `asyncflow serve`."""
        server = self.config.server
        reserved = reserve_port(server.host, server.port)
        self.port = reserved.getsockname()[1]
        loop = asyncio.get_running_loop()
        for sig in FORWARDED:
            loop.add_signal_handler(sig, self.forward, sig)
        try:
            failed = await self.start_all()
            if self.stopping.is_set():  # told to stop while starting
                codes = await self.wait_all_codes()
                return 0 if all(code in CLEAN_EXITS for code in codes) else 1
            if failed is not None:
                self.forward(signal.SIGTERM)
                await self.wait_all_codes()
                return failed
            print(f"asyncflow listening on {server.host}:{self.port}", flush=True)
            for child in self.children:
                assert child.process is not None
                print(
                    f"asyncflow process {child.index} (pid {child.process.pid})"
                    + (f": /metrics and dashboard at {child.http_url}" if child.http_url else ""),
                    flush=True,
                )
            if self.children[0].http_url:
                print(f"asyncflow dashboard at {self.children[0].http_url}/ui", flush=True)
            log.info(
                "asyncflow serving on %s:%d with %d processes",
                server.host, self.port, len(self.children),
            )  # fmt: skip
            codes = await asyncio.gather(*(self.keep(child) for child in self.children))
        finally:
            for sig in FORWARDED:
                loop.remove_signal_handler(sig)
            if self._killer is not None:
                self._killer.cancel()
            reserved.close()
        clean = all(code in CLEAN_EXITS for code in codes)
        log.info("asyncflow stopped (%d processes)", len(self.children))
        return 0 if clean else 1

    async def start_all(self) -> int | None:
        """Start every child and wait until each listens; a child that exits before
        (a bad setting, MySQL unreachable): its exit status."""
        started = await asyncio.gather(*(self.start(child) for child in self.children))
        for child, code in zip(self.children, started, strict=True):
            if code is not None:
                log.error("process %d exited with status %d while starting", child.index, code)
                return code if code > 0 else 1
        return None

    async def start(self, child: Child) -> int | None:
        """Spawn the child and wait for its ready line; None once it listens, else
        its exit status."""
        read_fd, write_fd = os.pipe()
        role = ChildRole(child.index, write_fd, os.getpid())
        command = [sys.executable, "-m", "asyncflow.cli", "serve", "--child", role.argument()]
        if self.config_path is not None:
            command += ["--config", self.config_path]
        http_port = self.config.http.port + child.index if self.config.http.port else 0
        env = os.environ | {
            "ASYNCFLOW_SERVER_PORT": str(self.port),
            "ASYNCFLOW_HTTP_PORT": str(http_port),
        }
        try:
            # Its own process group: a Ctrl-C reaches the parent only, which
            # forwards it once (a second signal cuts a child's shutdown delay).
            child.process = await asyncio.create_subprocess_exec(
                *command, env=env, pass_fds=(write_fd,), process_group=0
            )
        finally:
            os.close(write_fd)
        if self.stopping.is_set():  # the signal came while it was being spawned
            child.process.send_signal(signal.SIGTERM)
        child.started = time.monotonic()
        line = await read_line(read_fd)
        if not line:
            return await child.process.wait()
        child.http_url = "" if line == "-" else line
        return None

    async def keep(self, child: Child) -> int:
        """Wait for the child to exit; restart it unless the parent is stopping.
        Its last exit status."""
        while True:
            assert child.process is not None
            code = await child.process.wait()
            if self.stopping.is_set():
                return code
            ran = time.monotonic() - child.started
            if ran >= STEADY_SECONDS:
                child.delay = RESTART_DELAY_FIRST
            log.error(
                "process %d (pid %d) exited unexpectedly (%s) after %.0fs; restarting it in %gs",
                child.index, child.process.pid, describe(code), ran, child.delay,
            )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=child.delay)
            if self.stopping.is_set():
                return code
            child.delay = min(child.delay * 2, RESTART_DELAY_MAX)
            failed = await self.start(child)
            if failed is None:
                log.warning(
                    "process %d restarted (pid %d), HTTP at %s",
                    child.index, child.process.pid, child.http_url or "-",
                )  # fmt: skip

    def forward(self, sig: signal.Signals) -> None:
        """Pass the signal to every child. SIGTERM and SIGINT also stop the
        supervision: no child is restarted from then on."""
        if sig != signal.SIGHUP:
            self.stopping.set()
            if self._killer is None:
                self._killer = asyncio.get_running_loop().call_later(
                    self._drain_seconds() + self.kill_margin, self.kill_stragglers
                )
        for child in self.children:
            if child.process is not None and child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(sig)

    def kill_stragglers(self) -> None:
        """SIGKILL the children still running long after the stop signal: a child
        stuck in its drain must not keep the service (and its port) from ending,
        nor outlive a parent that its process manager kills next."""
        for child in self.children:
            if child.process is not None and child.process.returncode is None:
                log.error(
                    "process %d (pid %d) still running %gs after the stop signal: killing it",
                    child.index, child.process.pid, self._drain_seconds() + self.kill_margin,
                )  # fmt: skip
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()

    def _drain_seconds(self) -> float:
        server = self.config.server
        return server.shutdown_delay_seconds + 2 * server.grace_seconds

    async def wait_all_codes(self) -> list[int]:
        """Wait until every child has exited: their exit statuses."""
        return await asyncio.gather(
            *(child.process.wait() for child in self.children if child.process is not None)
        )


async def read_line(fd: int) -> str:
    """The first line written to the pipe, "" if its writer closed it without one."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    try:
        return (await reader.readline()).decode().strip()
    finally:
        transport.close()


def describe(code: int) -> str:
    """An exit status as people read it ("killed by SIGKILL", "status 1")."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"status {code}"
