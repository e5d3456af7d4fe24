-- See mysql_0004_cron_schedules.sql.
CREATE TABLE IF NOT EXISTS t_cron_schedule (
    name           TEXT NOT NULL PRIMARY KEY,
    cron_expr      TEXT NOT NULL,
    time_zone      TEXT NOT NULL,
    task_type      TEXT NOT NULL,
    task_stage     TEXT NOT NULL,
    task_context   TEXT NOT NULL,
    priority       INTEGER NOT NULL,
    catch_up       INTEGER NOT NULL,
    catch_up_limit INTEGER NOT NULL,
    paused         INTEGER NOT NULL DEFAULT 0,
    next_fire_time INTEGER NOT NULL,
    last_fire_time INTEGER NOT NULL DEFAULT 0,
    last_task_id   TEXT NOT NULL DEFAULT '',
    version        INTEGER NOT NULL DEFAULT 1,
    create_time    INTEGER NOT NULL,
    modify_time    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS t_cron_schedule_paused_next_fire_time
    ON t_cron_schedule (paused, next_fire_time);
