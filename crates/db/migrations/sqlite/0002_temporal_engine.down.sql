DROP INDEX IF EXISTS idx_job_logs_undispatched;
ALTER TABLE job_logs DROP COLUMN temporal_dispatched_at_ms;
ALTER TABLE job_logs DROP COLUMN engine;
