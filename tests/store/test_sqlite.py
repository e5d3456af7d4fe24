"""What only the SQLite store has: its durability setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncflow.config import StoreConfig
from asyncflow.errors import ConfigError
from asyncflow.server.app import open_store
from asyncflow.store.sqlite import SqliteStore

FULL, NORMAL = 2, 1
"""PRAGMA synchronous values."""


async def synchronous(store: SqliteStore) -> int:
    """The setting of the store's own connection (PRAGMA synchronous is per connection)."""
    return int(await store._run(lambda: store._db.execute("PRAGMA synchronous").fetchone()[0]))


async def test_an_acknowledged_write_is_synced_by_default(tmp_path: Path) -> None:
    store = await open_store(StoreConfig(sqlite_path=str(tmp_path / "af.db")))
    assert isinstance(store, SqliteStore)
    try:
        assert await synchronous(store) == FULL
    finally:
        await store.close()


async def test_normal_is_allowed_and_nothing_else(tmp_path: Path) -> None:
    config = StoreConfig(sqlite_path=str(tmp_path / "af.db"), sqlite_synchronous="normal")
    store = await open_store(config)
    assert isinstance(store, SqliteStore)
    try:
        assert await synchronous(store) == NORMAL
    finally:
        await store.close()
    with pytest.raises(ConfigError, match=r"store\.sqlite_synchronous"):
        await SqliteStore.open(str(tmp_path / "af.db"), synchronous="off; DROP TABLE x")
