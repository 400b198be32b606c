DROP TRIGGER job_logs_update_event;
CREATE TRIGGER job_logs_update_event AFTER UPDATE OF status, attempts ON job_logs
WHEN NEW.status IS NOT OLD.status OR NEW.attempts IS NOT OLD.attempts
BEGIN
    INSERT INTO job_events (job_id, tenant_id, status, attempt, message)
    VALUES (NEW.job_id, NEW.tenant_id, NEW.status, NEW.attempts,
            CASE WHEN NEW.status IN ('retrying', 'failed', 'dead') THEN NEW.error_message END);
END;
DELETE FROM job_events WHERE kind != 'job';
ALTER TABLE job_events DROP COLUMN kind;
ALTER TABLE batches DROP COLUMN finished_counts;
ALTER TABLE batches DROP COLUMN finished_status;
ALTER TABLE batches DROP COLUMN finished_at;
ALTER TABLE uploads DROP COLUMN eager_job_ids;
ALTER TABLE uploads DROP COLUMN eager_jobs;
ALTER TABLE job_logs DROP COLUMN result;
