"""Shared by the benchmarks: a throwaway MariaDB database and a real server process."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypedDict

import pymysql
import redis
from prometheus_client.parser import text_string_to_metric_families


class MysqlParams(TypedDict):
    host: str
    port: int
    user: str
    password: str


MYSQL: MysqlParams = {
    "host": os.environ.get("ASYNCFLOW_TEST_MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("ASYNCFLOW_TEST_MYSQL_PORT", "3306")),
    "user": os.environ.get("ASYNCFLOW_TEST_MYSQL_USER", "root"),
    "password": os.environ.get("ASYNCFLOW_TEST_MYSQL_PASSWORD", ""),
}
REDIS_URL = os.environ.get("ASYNCFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextmanager
def scratch_database() -> Iterator[str]:
    name = f"asyncflow_bench_{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:  # a benchmark that failed leaves no database behind either
        conn = pymysql.connect(**MYSQL)
        try:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()


@contextmanager
def scratch(backend: str) -> Iterator[str]:
    """Where a benchmark server keeps its tasks: a scratch MariaDB database (dropped
    afterwards) or an SQLite file in a temporary directory."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="asyncflow-bench-db-") as tmp:
            yield str(Path(tmp) / "asyncflow.db")
    else:
        with scratch_database() as database:
            yield database


class CountedUser:
    """A MariaDB user made for one benchmark server, so the statements that server sends
    can be read from information_schema.USER_STATISTICS (`userstat`, switched on here)
    without counting anybody else's (tests/e2e/test_statements.py does the same)."""

    def __init__(self, database: str) -> None:
        self.name = f"af_bench_{uuid.uuid4().hex[:10]}"
        self.password = uuid.uuid4().hex
        self.database = database

    def __enter__(self) -> CountedUser:
        self._root("SET GLOBAL userstat = 1")
        self._root(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
        self._root("CREATE USER %s@'%%' IDENTIFIED BY %s", (self.name, self.password))
        self._root(f"GRANT ALL ON `{self.database}`.* TO %s@'%%'", (self.name,))
        return self

    def __exit__(self, *exc: object) -> None:
        self._root("DROP USER IF EXISTS %s@'%%'", (self.name,))

    @property
    def settings(self) -> dict[str, str]:
        """The server's ASYNCFLOW_* variables to connect as this user."""
        return {
            "ASYNCFLOW_STORE_MYSQL_USER": self.name,
            "ASYNCFLOW_STORE_MYSQL_PASSWORD": self.password,
        }

    def statements(self) -> int:
        """Every statement the user has sent (BEGIN and COMMIT included)."""
        row = self._root(
            "SELECT SELECT_COMMANDS + UPDATE_COMMANDS + OTHER_COMMANDS"
            " FROM information_schema.USER_STATISTICS WHERE USER = %s",
            (self.name,),
        )
        return int(str(row[0])) if row else 0

    def _root(self, sql: str, params: tuple[object, ...] = ()) -> tuple[object, ...] | None:
        conn = pymysql.connect(**MYSQL, autocommit=True)
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            row: tuple[object, ...] | None = cur.fetchone()
            return row
        finally:
            conn.close()


def free_port() -> int:
    """A port nobody listens on now (for the HTTP side, whose port `serve` does not print)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TaskRows:
    """Reads a type's task rows straight from the store's tables (sqlite3 or pymysql),
    so a benchmark checks its work without loading the server it measures."""

    def __init__(self, backend: str, database: str, task_type: str) -> None:
        self.backend = backend
        self.task_type = task_type
        if backend == "sqlite":
            self.conn: sqlite3.Connection | pymysql.Connection = sqlite3.connect(
                database, isolation_level=None
            )
        else:
            self.conn = pymysql.connect(**MYSQL, database=database, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def _scalar(self, sql: str, params: tuple[object, ...] = ()) -> int:
        cur = self.conn.cursor()
        cur.execute(sql.replace("%s", "?") if self.backend == "sqlite" else sql, params)
        row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def tables(self) -> list[str]:
        pattern = f"t\\_{self.task_type}\\_task\\_%"
        sql = (
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ? ESCAPE '\\'"
            if self.backend == "sqlite"
            else "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = DATABASE() AND table_name LIKE %s"
        )
        cur = self.conn.cursor()
        cur.execute(sql, (pattern,))
        return [str(name) for (name,) in cur.fetchall()]

    def count(self, where: str) -> int:
        """Rows matching `where` (a constant of the benchmark, never input)."""
        return sum(self._scalar(f"SELECT COUNT(*) FROM {t} WHERE {where}") for t in self.tables())

    def any(self, where: str) -> bool:
        return any(self._scalar(f"SELECT 1 FROM {t} WHERE {where} LIMIT 1") for t in self.tables())


def backend_env(backend: str, database: str, prefix: str) -> dict[str, str]:
    """ASYNCFLOW_* settings of a benchmark server: "mysql" (MariaDB + Redis, the
    production shape) or "sqlite" (the embedded default, `database` a file path)."""
    if backend == "sqlite":
        return {
            "ASYNCFLOW_STORE_BACKEND": "sqlite",
            "ASYNCFLOW_STORE_SQLITE_PATH": database,
            "ASYNCFLOW_CACHE_BACKEND": "memory",
        }
    return {
        "ASYNCFLOW_STORE_BACKEND": "mysql",
        "ASYNCFLOW_STORE_MYSQL_HOST": str(MYSQL["host"]),
        "ASYNCFLOW_STORE_MYSQL_PORT": str(MYSQL["port"]),
        "ASYNCFLOW_STORE_MYSQL_USER": str(MYSQL["user"]),
        "ASYNCFLOW_STORE_MYSQL_PASSWORD": str(MYSQL["password"]),
        "ASYNCFLOW_STORE_MYSQL_DATABASE": database,
        "ASYNCFLOW_CACHE_BACKEND": "redis",
        "ASYNCFLOW_CACHE_REDIS_URL": REDIS_URL,
        "ASYNCFLOW_CACHE_KEY_PREFIX": prefix,
    }


def listening(
    command: list[str], env: dict[str, str], banner: str
) -> tuple[subprocess.Popen[str], str]:
    """Start a server process and wait for its "<banner> HOST:PORT" line."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(banner):
            return process, line.split()[-1]
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"{command[0]} did not start")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ASYNCFLOW_")}


CHILD_URLS: dict[int, list[str]] = {}
"""`serve --processes N`: the HTTP side of each child (index order), by the parent's pid."""
CHILD_LINE = re.compile(r"^asyncflow process \d+ \(pid \d+\): .* at (?P<url>\S+)$")


@contextmanager
def server_process(
    database: str,
    prefix: str,
    backend: str = "mysql",
    *,
    processes: int = 1,
    settings: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, int]]:
    """`asyncflow serve` on port 0 (see backend_env); yields (address, pid). With
    `processes` > 1, `serve --processes N` (the pid is the parent's; its children's
    HTTP sides are in CHILD_URLS, cpu_seconds counts them). `settings` are more
    ASYNCFLOW_* variables."""
    env = clean_env() | backend_env(backend, database, prefix)
    env |= {
        "ASYNCFLOW_SERVER_PORT": "0",
        "ASYNCFLOW_HTTP_PORT": "0",
        "ASYNCFLOW_SERVER_SHUTDOWN_DELAY_SECONDS": "0",  # no load balancer to wait for
        "ASYNCFLOW_LOG_LEVEL": "WARNING",
        "ASYNCFLOW_SERVER_PROCESSES": str(processes),
    } | dict(settings or {})
    binary = Path(sys.executable).with_name("asyncflow")
    process, address = listening([str(binary), "serve"], env, "asyncflow listening on ")
    try:
        if processes > 1:  # the parent prints one line per child right after
            assert process.stdout is not None
            urls: list[str] = []
            while len(urls) < processes:
                found = CHILD_LINE.match(process.stdout.readline().strip())
                if found:
                    urls.append(found["url"])
            CHILD_URLS[process.pid] = urls
        yield address, process.pid
    finally:
        CHILD_URLS.pop(process.pid, None)
        process.terminate()
        process.wait(30)
        assert process.stdout is not None
        process.stdout.close()
        if backend == "mysql":
            forget_keys(prefix)


def metric_sums(urls: list[str], name: str, **labels: str) -> list[float]:
    """The samples `name` with these labels, summed, from each process's /metrics."""
    found = []
    for url in urls:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        found.append(sum(
            sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ))  # fmt: skip
    return found


def forget_keys(prefix: str) -> None:
    """Delete the benchmark's cache keys: Redis is shared with the test suite."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        batch = list(client.scan_iter(match=prefix + "*", count=1000))
        for first in range(0, len(batch), 1000):
            client.delete(*batch[first : first + 1000])
    finally:
        client.close()


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of every core since boot, from /proc/stat: the
    share of the machine busy over a span is the ratio of their differences."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def mariadb_pid() -> int | None:
    """The local MariaDB server's pid (its CPU per task), if it runs on this machine."""
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() in ("mariadbd", "mysqld"):
                return int(stat.parent.name)
        except OSError:
            continue
    return None


def cpu_seconds(pid: int) -> float:
    """CPU time a process and its live children (`serve --processes N`) have used
    so far (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return own + sum(_cpu_if_alive(int(child)) for child in children)


def _cpu_if_alive(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except FileNotFoundError:  # exited since its parent listed it
        return 0.0


def rss_mib(pid: int) -> float:
    """Resident memory of a process (0: this one), MiB."""
    for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": ordered[-1]}
