"""The SQLite dialect: every statement asyncflow.store.sqlite runs.

`{table}` is filled in from a validated type and an integer position, `{ids}`
with placeholders; every value is bound.
"""

from __future__ import annotations

from asyncflow.store.common import CONFIG_COLUMNS, TASK_COLUMNS, wire_size_sql
from asyncflow.store.operator import schedule_sql
from asyncflow.store.tables import table_sql

CONFIG_UPSERT = """
INSERT INTO t_schedule_cfg (task_type, schedule_limit, schedule_interval, max_processing_time,
    max_retry_num, retry_interval, max_retry_interval, create_time, modify_time)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (task_type) DO UPDATE SET
    schedule_limit = excluded.schedule_limit,
    schedule_interval = excluded.schedule_interval,
    max_processing_time = excluded.max_processing_time,
    max_retry_num = excluded.max_retry_num,
    retry_interval = excluded.retry_interval,
    max_retry_interval = excluded.max_retry_interval,
    modify_time = excluded.modify_time
"""
POS_INSERT = """
INSERT INTO t_schedule_pos (task_type, schedule_begin_pos, schedule_end_pos, create_time,
    modify_time)
VALUES (?, 1, 1, ?, ?) ON CONFLICT (task_type) DO NOTHING
"""
CONFIG_SELECT = f"""
SELECT {CONFIG_COLUMNS} FROM t_schedule_cfg c JOIN t_schedule_pos p ON p.task_type = c.task_type
"""
END_POS_ADVANCE = """
UPDATE t_schedule_pos SET schedule_end_pos = schedule_end_pos + 1, modify_time = ?
WHERE task_type = ? AND schedule_end_pos = ?
"""
# One connection, one writer: the read and the insert that follows are atomic.
INSERT_TARGET = """
SELECT p.schedule_end_pos, c.max_retry_num, c.retry_interval, c.max_retry_interval,
    c.max_processing_time, c.paused
FROM t_schedule_pos p JOIN t_schedule_cfg c ON c.task_type = p.task_type
WHERE p.task_type = ?
"""
BEGIN_POS_ADVANCE = """
UPDATE t_schedule_pos SET schedule_begin_pos = schedule_begin_pos + 1, modify_time = ?
WHERE task_type = ? AND schedule_begin_pos = ? AND schedule_begin_pos < schedule_end_pos
"""
POS_SELECT = (
    "SELECT schedule_begin_pos, schedule_end_pos, data_begin_pos FROM t_schedule_pos"
    " WHERE task_type = ?"
)
DATA_BEGIN_ADVANCE = """
UPDATE t_schedule_pos SET data_begin_pos = data_begin_pos + 1
WHERE task_type = ? AND data_begin_pos = ?
"""
LIVE_TASK = "SELECT 1 FROM {table} WHERE status IN (1, 2) LIMIT 1"
NEWEST_CREATE = "SELECT create_time FROM {table} ORDER BY id DESC LIMIT 1"
KEYS_PRUNE = """
DELETE FROM t_task_key WHERE rowid IN (
    SELECT rowid FROM t_task_key WHERE task_type = ? AND create_time < ? LIMIT ?)
"""
KEY_INSERT = (
    "INSERT INTO t_task_key (task_type, idempotency_key, task_id, create_time) VALUES (?, ?, ?, ?)"
)
KEY_SELECT = "SELECT task_id FROM t_task_key WHERE task_type = ? AND idempotency_key = ?"
TASK_COLUMNS_INSERTED = """task_id, task_type, user_id, task_stage, status, priority,
    crt_retry_num, max_retry_num, retry_interval, max_retry_interval, schedule_log, task_context,
    order_time, lease_token, hold_count, lease_deadline, version, create_time, modify_time"""
# The values of InsertTarget.params: a handed-off task goes in PROCESSING with its
# lease (status, lease_token, hold_count, lease_deadline are bound).
TASK_ROW = "(?, ?, ?, ?, ?, ?, 0, ?, ?, ?, '', ?, ?, ?, ?, ?, 1, ?, ?)"
TASK_INSERT = "INSERT INTO {table} (" + TASK_COLUMNS_INSERTED + ") VALUES " + TASK_ROW
# Many tasks of one table in one statement (cheaper than a statement each);
# RETURNING gives their ids (in no promised order: matched by task_id).
TASK_INSERT_ROWS = (
    "INSERT INTO {table} (" + TASK_COLUMNS_INSERTED + ") VALUES {rows} RETURNING id, task_id"
)
INSERT_ROWS = 1000
"""Rows per multi-row insert: 16 bound values each, well under SQLite's 32,766."""
# The last column: the row's estimated size in a reply, in bytes (a BLOB's LENGTH).
DUE_CANDIDATES = (
    "SELECT order_time, id, "
    + wire_size_sql("LENGTH(CAST({} AS BLOB))")
    + " FROM {table} WHERE status = 1 AND order_time <= ? ORDER BY order_time, id LIMIT ?"
)
CLAIM = (
    """
UPDATE {table} SET status = 2, lease_token = ?, hold_count = hold_count + 1,
    lease_deadline = ?, version = version + 1, modify_time = ?
WHERE status = 1 AND id IN ({ids})
RETURNING """
    + TASK_COLUMNS
)
UPDATE_LEASED = """
UPDATE {table} SET status = ?, task_stage = ?, task_context = ?, crt_retry_num = ?,
    order_time = ?, schedule_log = ?, lease_token = '', lease_deadline = 0,
    version = version + 1, modify_time = ?
WHERE id = ? AND status = 2 AND lease_token = ? AND version = ?
"""
EXTEND_LEASE = (
    """
UPDATE {table} SET lease_deadline = ?, version = version + 1, modify_time = ?
WHERE id = ? AND status = 2 AND lease_token = ? AND version = ?
RETURNING """
    + TASK_COLUMNS
)
# An operator's write (cancel, retry): fenced by the version alone, whatever the status.
UPDATE_FENCED = """
UPDATE {table} SET status = ?, task_stage = ?, task_context = ?, crt_retry_num = ?,
    order_time = ?, schedule_log = ?, lease_token = '', lease_deadline = 0,
    version = version + 1, modify_time = ?
WHERE id = ? AND version = ?
"""
# A retried task in a table holds no longer scan: scan it again.
BEGIN_POS_LOWER = """
UPDATE t_schedule_pos SET schedule_begin_pos = ?, modify_time = ?
WHERE task_type = ? AND schedule_begin_pos > ?
"""
TABLE_SQL = table_sql("?")
SCHEDULE_SQL = schedule_sql("?")
