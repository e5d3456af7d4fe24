-- Oldest task table not yet dropped by retention; listing and counting start here.
ALTER TABLE t_schedule_pos ADD COLUMN data_begin_pos INT NOT NULL DEFAULT 1;
