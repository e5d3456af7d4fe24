-- One task table t_<type>_task_<pos>; {table} is built by asyncflow.core.ids.task_table.
CREATE TABLE IF NOT EXISTS {table} (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id            TEXT NOT NULL DEFAULT '',
    task_id            TEXT NOT NULL UNIQUE,
    task_type          TEXT NOT NULL,
    task_stage         TEXT NOT NULL DEFAULT '',
    status             INTEGER NOT NULL DEFAULT 1,
    priority           INTEGER NOT NULL DEFAULT 0,
    crt_retry_num      INTEGER NOT NULL DEFAULT 0,
    max_retry_num      INTEGER NOT NULL DEFAULT 0,
    retry_interval     INTEGER NOT NULL DEFAULT 0,
    max_retry_interval INTEGER NOT NULL DEFAULT 0,
    schedule_log       TEXT NOT NULL DEFAULT '',
    task_context       TEXT NOT NULL DEFAULT '',
    order_time         INTEGER NOT NULL DEFAULT 0,
    lease_token        TEXT NOT NULL DEFAULT '',
    hold_count         INTEGER NOT NULL DEFAULT 0,
    lease_deadline     INTEGER NOT NULL DEFAULT 0,
    version            INTEGER NOT NULL DEFAULT 1,
    create_time        INTEGER NOT NULL,
    modify_time        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {table}_user_id ON {table} (user_id);
CREATE INDEX IF NOT EXISTS {table}_status_order_time ON {table} (status, order_time);
CREATE INDEX IF NOT EXISTS {table}_status_lease_deadline ON {table} (status, lease_deadline)
