-- The same logical change as migrations/sqlite/0002_temporal_engine.up.sql.
-- The job engine of each row. 'sql' jobs are claimed from this table by `photo-api worker`;
-- 'temporal' jobs run as Temporal workflows (`temporal_workflow_id` on `temporal_task_queue`,
-- columns of 0001) and SQL workers never touch them. The row stays the API's source of status
-- for both engines: Temporal activities keep it in step through the same fenced transitions.
ALTER TABLE job_logs ADD COLUMN engine TEXT NOT NULL DEFAULT 'sql';
-- When the workflow start was acknowledged by Temporal. NULL on a temporal job: the outbox —
-- `serve` re-starts it, idempotently by workflow id, until Temporal has it.
ALTER TABLE job_logs ADD COLUMN temporal_dispatched_at_ms BIGINT;
CREATE INDEX idx_job_logs_undispatched ON job_logs(job_id)
    WHERE engine = 'temporal' AND temporal_dispatched_at_ms IS NULL;
