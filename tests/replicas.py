"""`asyncflow serve` replicas as real processes on the shared MariaDB and Redis."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from conftest import MYSQL, REDIS_URL
from waiting import eventually

LISTENING = re.compile(rb"asyncflow listening on [\w.:\[\]]+:(?P<port>\d+)")


def replica_env(database: str, redis_prefix: str, **settings: str) -> dict[str, str]:
    """The environment of a replica on the test database and Redis prefix: fast
    governance loops and a short lock TTL, plus `settings` (ASYNCFLOW_* names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCFLOW_")}
    env.update(
        {
            "ASYNCFLOW_SERVER_PORT": "0",
            "ASYNCFLOW_SERVER_SHUTDOWN_DELAY_SECONDS": "0",  # no load balancer to wait for
            "ASYNCFLOW_STORE_BACKEND": "mysql",
            "ASYNCFLOW_STORE_MYSQL_HOST": MYSQL["host"],
            "ASYNCFLOW_STORE_MYSQL_PORT": str(MYSQL["port"]),
            "ASYNCFLOW_STORE_MYSQL_USER": MYSQL["user"],
            "ASYNCFLOW_STORE_MYSQL_PASSWORD": MYSQL["password"],
            "ASYNCFLOW_STORE_MYSQL_DATABASE": database,
            "ASYNCFLOW_CACHE_BACKEND": "redis",
            "ASYNCFLOW_CACHE_REDIS_URL": REDIS_URL,
            "ASYNCFLOW_CACHE_KEY_PREFIX": redis_prefix,
            "ASYNCFLOW_GOVERNANCE_LONG_PROCESS_INTERVAL": "0.2",
            "ASYNCFLOW_GOVERNANCE_SPLIT_INTERVAL": "0.2",
            "ASYNCFLOW_GOVERNANCE_MOVE_INTERVAL": "0.2",
            "ASYNCFLOW_GOVERNANCE_LOCK_TTL_SECONDS": "1.5",
            **settings,
        }
    )
    return env


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
