"""`asyncflow serve` replicas as real processes (environments from conftest.serve_env)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from waiting import eventually

LISTENING = re.compile(rb"asyncflow listening on [\w.:\[\]]+:(?P<port>\d+)")


class Replica:
    """`asyncflow serve` in its own process, its output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("wb")
        binary = Path(sys.executable).with_name("asyncflow")
        self.process = subprocess.Popen(
            [str(binary), "serve"], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    async def address(self) -> str:
        """Once it listens: its gRPC address."""

        async def listening() -> bool:
            return LISTENING.search(self.log_path.read_bytes()) is not None

        await eventually(listening, within=60, what=f"replica {self.pid} listening")
        found = LISTENING.search(self.log_path.read_bytes())
        assert found is not None
        return f"127.0.0.1:{found['port'].decode()}"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.log.close()
        return code
