-- See mysql_0001_init.sql for what each table is for.
CREATE TABLE IF NOT EXISTS t_schedule_cfg (
    task_type           TEXT NOT NULL PRIMARY KEY,
    schedule_limit      INTEGER NOT NULL,
    schedule_interval   INTEGER NOT NULL,
    max_processing_time INTEGER NOT NULL,
    max_retry_num       INTEGER NOT NULL,
    retry_interval      INTEGER NOT NULL,
    max_retry_interval  INTEGER NOT NULL,
    create_time         INTEGER NOT NULL,
    modify_time         INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS t_schedule_pos (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    task_type          TEXT NOT NULL UNIQUE,
    schedule_begin_pos INTEGER NOT NULL DEFAULT 1,
    schedule_end_pos   INTEGER NOT NULL DEFAULT 1,
    create_time        INTEGER NOT NULL,
    modify_time        INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS t_task_key (
    task_type       TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    task_id         TEXT NOT NULL,
    create_time     INTEGER NOT NULL,
    PRIMARY KEY (task_type, idempotency_key)
);
