"""The parent of `serve --processes N` kills a child stuck in its drain."""

from __future__ import annotations

import asyncio
import signal
import sys

from asyncflow.config import Config, ServerConfig
from asyncflow.server.processes import Supervisor

STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


async def test_a_child_stuck_past_its_drain_time_is_killed() -> None:
    config = Config(server=ServerConfig(processes=2, shutdown_delay_seconds=0, grace_seconds=0))
    supervisor = Supervisor(config, None)
    supervisor.kill_margin = 0.2
    for child in supervisor.children:
        child.process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", STUBBORN, stdout=asyncio.subprocess.PIPE
        )
        assert child.process.stdout is not None
        assert await child.process.stdout.readline() == b"ready\n"  # SIGTERM is ignored
    supervisor.forward(signal.SIGTERM)
    codes = await asyncio.wait_for(supervisor.wait_all_codes(), timeout=30)
    assert codes == [-signal.SIGKILL, -signal.SIGKILL]
