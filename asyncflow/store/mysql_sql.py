"""The MySQL/MariaDB dialect: every statement asyncflow.store.mysql sends.

`{table}` is filled in from a validated type and an integer position, `{ids}`
and `{rows}` with placeholders; every value is bound.
"""

from __future__ import annotations

from asyncflow.store.common import CONFIG_COLUMNS, TASK_COLUMNS, wire_size_sql
from asyncflow.store.operator import schedule_sql
from asyncflow.store.tables import table_sql

# IF NOT EXISTS DDL raises a note when the object exists; aiomysql would turn each
# note into a Python warning plus a SHOW WARNINGS round trip.
QUIET_NOTES = "SET SESSION sql_notes = 0"
CONFIG_UPSERT = """
INSERT INTO t_schedule_cfg (task_type, schedule_limit, schedule_interval, max_processing_time,
    max_retry_num, retry_interval, max_retry_interval, create_time, modify_time)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON DUPLICATE KEY UPDATE
    schedule_limit = VALUES(schedule_limit),
    schedule_interval = VALUES(schedule_interval),
    max_processing_time = VALUES(max_processing_time),
    max_retry_num = VALUES(max_retry_num),
    retry_interval = VALUES(retry_interval),
    max_retry_interval = VALUES(max_retry_interval),
    modify_time = VALUES(modify_time)
"""
POS_INSERT = """
INSERT INTO t_schedule_pos (task_type, schedule_begin_pos, schedule_end_pos, create_time,
    modify_time)
VALUES (%s, 1, 1, %s, %s) ON DUPLICATE KEY UPDATE task_type = task_type
"""
END_POS_SELECT = "SELECT schedule_end_pos FROM t_schedule_pos WHERE task_type = %s"
CONFIG_SELECT = f"""
SELECT {CONFIG_COLUMNS} FROM t_schedule_cfg c JOIN t_schedule_pos p ON p.task_type = c.task_type
"""
END_POS_ADVANCE = """
UPDATE t_schedule_pos SET schedule_end_pos = schedule_end_pos + 1, modify_time = %s
WHERE task_type = %s AND schedule_end_pos = %s
"""
POS_LOCKED = (
    "SELECT schedule_begin_pos, schedule_end_pos, data_begin_pos FROM t_schedule_pos"
    " WHERE task_type = %s FOR UPDATE"
)
BEGIN_POS_ADVANCE = """
UPDATE t_schedule_pos SET schedule_begin_pos = schedule_begin_pos + 1, modify_time = %s
WHERE task_type = %s AND schedule_begin_pos = %s AND schedule_begin_pos < schedule_end_pos
"""
DATA_BEGIN_ADVANCE = """
UPDATE t_schedule_pos SET data_begin_pos = data_begin_pos + 1
WHERE task_type = %s AND data_begin_pos = %s
"""
# Uses idx_status_order_time: stops at the first live task instead of counting.
LIVE_TASK = "SELECT 1 FROM {table} WHERE status IN (1, 2) LIMIT 1"
NEWEST_CREATE = "SELECT create_time FROM {table} ORDER BY id DESC LIMIT 1"
KEYS_PRUNE = "DELETE FROM t_task_key WHERE task_type = %s AND create_time < %s LIMIT %s"
KEY_INSERT = (
    "INSERT INTO t_task_key (task_type, idempotency_key, task_id, create_time)"
    " VALUES (%s, %s, %s, %s)"
)
KEY_SELECT = "SELECT task_id FROM t_task_key WHERE task_type = %s AND idempotency_key = %s"
KEYS_SELECT = (
    "SELECT idempotency_key, task_id FROM t_task_key"
    " WHERE task_type = %s AND idempotency_key IN ({ids})"
)
KEYS_INSERT = (
    "INSERT INTO t_task_key (task_type, idempotency_key, task_id, create_time) VALUES {rows}"
)
KEY_ROW = "(%s, %s, %s, %s)"
# New tasks go to the type's newest table as the server last saw it, guarded:
# inserted only while that table is still the newest one, under a shared lock
# on the type's position row held until commit. A begin advance locks that row
# exclusively, so it waits for the insert and then sees its tasks: it can never
# retire a table a create is writing to. When the guard fails (a split moved
# the newest table), nothing is written and the store reads the position again.
#
# One task: one INSERT ... SELECT, guard included (in autocommit: one round
# trip). A handed-off task (a lease token given) goes in PROCESSING under that
# lease unless the type is paused, decided by the same statement from the row
# it reads under the lock. Several: the guard as a locked read, then one multi-row INSERT ...
# VALUES; an INSERT ... SELECT of many rows would reserve auto-increment ids in
# powers of two and leave gaps, and MAX(id) is how a table's size is measured.
TASK_INSERT_GUARDED = """
INSERT INTO {table} (task_id, task_type, user_id, task_stage, status, priority, crt_retry_num,
    max_retry_num, retry_interval, max_retry_interval, schedule_log, task_context, order_time,
    lease_token, hold_count, lease_deadline, version, create_time, modify_time)
SELECT %s, p.task_type, %s, %s, IF(h.token <> '' AND c.paused = 0, 2, 1), %s, 0,
    c.max_retry_num, c.retry_interval, c.max_retry_interval, '', %s, %s,
    IF(h.token <> '' AND c.paused = 0, h.token, ''), h.token <> '' AND c.paused = 0,
    IF(h.token <> '' AND c.paused = 0, %s + c.max_processing_time, 0), 1, %s, %s
FROM t_schedule_pos p JOIN t_schedule_cfg c ON c.task_type = p.task_type
    JOIN (SELECT %s AS token) h
WHERE p.task_type = %s AND p.schedule_end_pos = %s
LOCK IN SHARE MODE
"""
INSERT_TARGET_LOCKED = """
SELECT p.schedule_end_pos, c.max_retry_num, c.retry_interval, c.max_retry_interval,
    c.max_processing_time, c.paused
FROM t_schedule_pos p JOIN t_schedule_cfg c ON c.task_type = p.task_type
WHERE p.task_type = %s AND p.schedule_end_pos = %s LOCK IN SHARE MODE
"""
TASK_INSERT = """
INSERT INTO {table} (task_id, task_type, user_id, task_stage, status, priority, crt_retry_num,
    max_retry_num, retry_interval, max_retry_interval, schedule_log, task_context, order_time,
    lease_token, hold_count, lease_deadline, version, create_time, modify_time)
VALUES {rows}
"""
# One row of TASK_INSERT, filled in by mysql._task_rows with quoted literals: a
# handed-off task goes in PROCESSING with its lease (status, lease_token,
# hold_count, lease_deadline). The %s after the first 0 stands for the type's
# three retry settings (max_retry_num, retry_interval, max_retry_interval).
TASK_ROW = "(%s, %s, %s, %s, %s, %s, 0, %s, '', %s, %s, %s, %s, %s, 1, %s, %s)"
# What an insert wrote that the server did not choose: MariaDB returns it from
# the INSERT itself; MySQL reads it back by task id.
INSERTED_COLUMNS = (
    "id, task_id, max_retry_num, retry_interval, max_retry_interval, status, lease_deadline"
)
INSERTED_IDS = "id, task_id"
"""A multi-row insert's RETURNING: the type's settings were read before it."""
INSERTED_SELECT = "SELECT " + INSERTED_COLUMNS + " FROM {table} WHERE task_id IN ({ids})"
# The uncontended claim (MysqlStore.task_claim_due_many): the due rows by a
# plain read, then one UPDATE in autocommit per hold, fenced by each row's
# version (every write bumps it), so the rows changed are exactly the rows read.
DUE_ROWS = (
    "SELECT " + TASK_COLUMNS + ", " + wire_size_sql("LENGTH({})")
    + " FROM {table} WHERE status = 1 AND order_time <= %s ORDER BY order_time, id LIMIT %s"
)  # fmt: skip
CLAIM_FENCED = """
UPDATE {table} SET status = 2, lease_token = %s, hold_count = hold_count + 1,
    lease_deadline = %s, version = version + 1, modify_time = %s
WHERE id IN ({ids}) AND status = 1 AND (id, version) IN ({fences})
"""
ROW_VERSION = "(%s, %s)"
# Which of a fenced claim's rows it changed, when another claimer took some
# (a lease token is drawn per hold: nobody else writes it).
CLAIMED_BY = "SELECT id FROM {table} WHERE id IN ({ids}) AND lease_token = %s"
# Under contention, a claim finds its candidates with a plain read of
# idx_status_order_time, then locks them by primary key, skipping rows another
# claimer holds and rows that stopped being due meanwhile (a locking read sees
# the latest committed row).
# Locking while scanning the secondary index (DUE_SCAN_LOCKED) costs MariaDB
# about 3x the CPU: a locking scan visits, and looks up in the clustered index,
# every delete-marked entry a drain leaves behind (claimed rows leave status 1
# faster than purge removes their old entries). Only when another claimer took
# some of the candidates (another replica; one replica's claims share one
# transaction) does the claim scan with locks for the rest, to skip past them.
DUE_IDS = (
    "SELECT id FROM {table} WHERE status = 1 AND order_time <= %s ORDER BY order_time, id LIMIT %s"
)
# The last column: the row's estimated size in a reply (LENGTH counts bytes).
DUE_COLUMNS = "SELECT " + TASK_COLUMNS + ", " + wire_size_sql("LENGTH({})")
# By primary key, forced: on a small table the optimizer would rather scan
# idx_status_order_time, and the locking scan then keeps every due row locked
# (READ COMMITTED releases non-matching rows, but not those skipped past).
DUE_LOCKED = (
    DUE_COLUMNS + " FROM {table} FORCE INDEX (PRIMARY)"
    " WHERE id IN ({ids}) AND status = 1 AND order_time <= %s FOR UPDATE SKIP LOCKED"
)
# {mine}: the rows this claim has locked already (id NOT IN ...), or nothing.
DUE_SCAN_LOCKED = (
    DUE_COLUMNS + " FROM {table} WHERE status = 1 AND order_time <= %s{mine}"
    " ORDER BY order_time, id LIMIT %s FOR UPDATE SKIP LOCKED"
)
NOT_MINE = " AND id NOT IN ({ids})"
CLAIM = """
UPDATE {table} SET status = 2, lease_token = %s, hold_count = hold_count + 1,
    lease_deadline = %s, version = version + 1, modify_time = %s
WHERE status = 1 AND id IN ({ids})
"""
UPDATE_LEASED = """
UPDATE {table} SET status = %s, task_stage = %s, task_context = %s, crt_retry_num = %s,
    order_time = %s, schedule_log = %s, lease_token = '', lease_deadline = 0,
    version = version + 1, modify_time = %s
WHERE id = %s AND status = 2 AND lease_token = %s AND version = %s
"""
EXTEND_LEASE = """
UPDATE {table} SET lease_deadline = %s, version = version + 1, modify_time = %s
WHERE id = %s AND status = 2 AND lease_token = %s AND version = %s
"""
# A batch of leased updates: one statement, fenced row by row; `t.id IN` keeps
# its reads (and so its locks) on its own rows whatever join order the
# optimizer picks. Tried alone first; when not every row matched, redone after
# locking its rows (LEASED_LOCKED), so it knows exactly which of them it
# changes (MySQL has no UPDATE ... RETURNING).
LEASED_LOCKED = (
    "SELECT id, lease_token, version FROM {table} WHERE status = 2 AND id IN ({ids}) FOR UPDATE"
)
LEASED_ROW = (
    "SELECT %s AS id, %s AS lease_token, %s AS version, %s AS status, %s AS task_stage,"
    " %s AS task_context, %s AS crt_retry_num, %s AS order_time, %s AS schedule_log"
)
UPDATE_LEASED_MANY = """
UPDATE {table} t JOIN ({rows}) v ON t.id = v.id SET
    t.status = v.status, t.task_stage = v.task_stage, t.task_context = v.task_context,
    t.crt_retry_num = v.crt_retry_num, t.order_time = v.order_time,
    t.schedule_log = v.schedule_log, t.lease_token = '', t.lease_deadline = 0,
    t.version = t.version + 1, t.modify_time = %s
WHERE t.status = 2 AND t.lease_token = v.lease_token AND t.version = v.version
    AND t.id IN ({ids})
"""
# Leased updates that write the same values (a drain's successes: same
# outcome, stage, context and log entry) in one statement: the values bound
# once, each row fenced by its own (id, lease_token, version). Costs MariaDB
# about half of UPDATE_LEASED_MANY's derived table of one SELECT per row.
UPDATE_LEASED_SAME = """
UPDATE {table} SET status = %s, task_stage = %s, task_context = %s, crt_retry_num = %s,
    order_time = %s, schedule_log = %s, lease_token = '', lease_deadline = 0,
    version = version + 1, modify_time = %s
WHERE id IN ({ids}) AND status = 2 AND (id, lease_token, version) IN ({fences})
"""
FENCE = "(%s, %s, %s)"
# An operator's write (cancel, retry): fenced by the version alone, whatever the status.
UPDATE_FENCED = """
UPDATE {table} SET status = %s, task_stage = %s, task_context = %s, crt_retry_num = %s,
    order_time = %s, schedule_log = %s, lease_token = '', lease_deadline = 0,
    version = version + 1, modify_time = %s
WHERE id = %s AND version = %s
"""
# A retried task in a table holds no longer scan: scan it again.
BEGIN_POS_LOWER = """
UPDATE t_schedule_pos SET schedule_begin_pos = %s, modify_time = %s
WHERE task_type = %s AND schedule_begin_pos > %s
"""
TABLE_SQL = table_sql("%s")
SCHEDULE_SQL = schedule_sql("%s")
