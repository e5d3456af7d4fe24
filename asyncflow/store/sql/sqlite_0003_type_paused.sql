-- A paused task type (PauseTaskType): nothing of it is held or pushed while 1.
ALTER TABLE t_schedule_cfg ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
