ALTER TABLE job_logs DROP COLUMN trace_context;
