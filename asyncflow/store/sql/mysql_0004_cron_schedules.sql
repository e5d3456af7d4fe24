-- Cron schedules (CreateSchedule): each creates one task from its template per
-- tick of cron_expr read in time_zone. catch_up is asyncflow.core.model.CatchUp
-- (1 skip, 2 latest, 3 all). Every write is conditional on version.
CREATE TABLE IF NOT EXISTS t_cron_schedule (
    name           VARCHAR(64) NOT NULL,
    cron_expr      VARCHAR(128) NOT NULL,
    time_zone      VARCHAR(64) NOT NULL,
    task_type      VARCHAR(64) NOT NULL,
    task_stage     VARCHAR(128) NOT NULL,
    task_context   MEDIUMTEXT NOT NULL,
    priority       INT NOT NULL,
    catch_up       TINYINT NOT NULL,
    catch_up_limit INT NOT NULL,
    paused         TINYINT NOT NULL DEFAULT 0,
    next_fire_time BIGINT NOT NULL,
    last_fire_time BIGINT NOT NULL DEFAULT 0,
    last_task_id   VARCHAR(160) NOT NULL DEFAULT '',
    version        BIGINT NOT NULL DEFAULT 1,
    create_time    BIGINT NOT NULL,
    modify_time    BIGINT NOT NULL,
    PRIMARY KEY (name),
    KEY idx_paused_next_fire_time (paused, next_fire_time)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
