-- Schedule configuration per task type (the original's t_schedule_cfg).
-- retry_interval < 0 selects the uniform strategy (|retry_interval| each time).
CREATE TABLE IF NOT EXISTS t_schedule_cfg (
    task_type           VARCHAR(64) NOT NULL,
    schedule_limit      INT NOT NULL,
    schedule_interval   INT NOT NULL,
    max_processing_time INT NOT NULL,
    max_retry_num       INT NOT NULL,
    retry_interval      INT NOT NULL,
    max_retry_interval  INT NOT NULL,
    create_time         BIGINT NOT NULL,
    modify_time         BIGINT NOT NULL,
    PRIMARY KEY (task_type)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Rolling-table window per task type: holds scan begin..end, inserts go to end.
CREATE TABLE IF NOT EXISTS t_schedule_pos (
    id                 BIGINT NOT NULL AUTO_INCREMENT,
    task_type          VARCHAR(64) NOT NULL,
    schedule_begin_pos INT NOT NULL DEFAULT 1,
    schedule_end_pos   INT NOT NULL DEFAULT 1,
    create_time        BIGINT NOT NULL,
    modify_time        BIGINT NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY idx_task_type (task_type)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Idempotency keys of created tasks: one task per (type, key), whatever its table.
CREATE TABLE IF NOT EXISTS t_task_key (
    task_type       VARCHAR(64) NOT NULL,
    idempotency_key VARCHAR(64) NOT NULL,
    task_id         VARCHAR(160) NOT NULL,
    create_time     BIGINT NOT NULL,
    PRIMARY KEY (task_type, idempotency_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
