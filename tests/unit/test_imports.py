"""Every import points toward the core: asyncflow/core never imports an adapter.

The core's ports (asyncflow.core.ports) are implemented by the store, cache and
server packages; the core must not know them, nor the drivers they use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import asyncflow.core

CORE = Path(asyncflow.core.__file__).parent
FORBIDDEN = ("asyncflow.store", "asyncflow.cache", "asyncflow.server", "asyncflow.lock",
             "asyncflow.http", "aiomysql", "pymysql", "redis", "sqlite3", "grpc", "aiohttp",
             "prometheus_client")  # fmt: skip


def imported_modules(source: str, package: str) -> set[str]:
    """Absolute names of every module `source` (a module of `package`) imports,
    relative imports resolved, imports inside functions included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def forbidden(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == bad or n.startswith(bad + ".") for bad in FORBIDDEN))


def test_the_core_imports_no_adapter() -> None:
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) >= 8
    offences = {}
    for path in modules:
        package = ".".join(("asyncflow", "core", *path.relative_to(CORE).parent.parts))
        names = forbidden(imported_modules(path.read_text("utf-8"), package))
        if names:
            offences[str(path.relative_to(CORE))] = names
    assert offences == {}


def test_the_check_finds_imports_in_every_form() -> None:
    source = (
        "import redis.asyncio\n"
        "from asyncflow.store.sqlite import SqliteStore\n"
        "from ..cache import memory\n"
        "from .ports import TaskStore\n"
        "def later():\n"
        "    from asyncflow import server\n"
    )
    names = imported_modules(source, "asyncflow.core")
    assert forbidden(names) == [
        "asyncflow.cache", "asyncflow.cache.memory", "asyncflow.server",
        "asyncflow.store.sqlite", "asyncflow.store.sqlite.SqliteStore", "redis.asyncio",
    ]  # fmt: skip
    assert "asyncflow.core.ports" in names
