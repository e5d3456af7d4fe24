"""Which driver errors a store turns into Unavailable: the database cannot serve
now (retry later), as opposed to a statement that is wrong (a bug: INTERNAL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pymysql
import pytest

from asyncflow.store import mysql, sqlite


def sqlite_error(sql: str, db: sqlite3.Connection) -> sqlite3.Error:
    with pytest.raises(sqlite3.Error) as raised:
        db.execute(sql)
    return raised.value


def test_sqlite_busy_is_unavailable_a_bad_statement_is_not(tmp_path: Path) -> None:
    holder = sqlite3.connect(tmp_path / "db", isolation_level=None)
    other = sqlite3.connect(tmp_path / "db", isolation_level=None, timeout=0)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        assert sqlite._unavailable(sqlite_error("BEGIN IMMEDIATE", other))
        assert not sqlite._unavailable(sqlite_error("SELECT * FROM nowhere", holder))
        assert not sqlite._unavailable(sqlite_error("SELEKT 1", holder))
    finally:
        holder.close()
        other.close()


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (pymysql.err.OperationalError(2003, "Can't connect to MySQL server"), True),
        (pymysql.err.OperationalError(2013, "Lost connection to MySQL server"), True),
        (pymysql.err.OperationalError(1213, "Deadlock found"), True),
        (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"), True),
        (pymysql.err.OperationalError(1290, "running with --read-only"), True),
        (pymysql.err.InterfaceError(0, ""), True),
        (ConnectionResetError(), True),
        (pymysql.err.OperationalError(1054, "Unknown column 'x'"), False),
        (pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax"), False),
        (pymysql.err.IntegrityError(1062, "Duplicate entry"), False),
    ],
)
def test_mysql_connection_and_lock_failures_are_unavailable(
    error: Exception, unavailable: bool
) -> None:
    assert mysql._unavailable(error) is unavailable
