-- The event trigger of 0004.
CREATE OR REPLACE FUNCTION job_logs_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.attempts IS DISTINCT FROM OLD.attempts THEN
        PERFORM pg_advisory_xact_lock(706162657665); -- the key of photo-api's event order
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO job_events (job_id, tenant_id, status, attempt, message)
        VALUES (NEW.job_id, NEW.tenant_id, NEW.status, NEW.attempts, NULL);
    ELSIF NEW.status IS DISTINCT FROM OLD.status OR NEW.attempts IS DISTINCT FROM OLD.attempts THEN
        INSERT INTO job_events (job_id, tenant_id, status, attempt, message)
        VALUES (NEW.job_id, NEW.tenant_id, NEW.status, NEW.attempts,
                CASE WHEN NEW.status IN ('retrying', 'failed', 'dead') THEN NEW.error_message END);
    END IF;
    RETURN NULL;
END;
$$;
DELETE FROM job_events WHERE kind != 'job';
ALTER TABLE job_events DROP COLUMN IF EXISTS kind;
ALTER TABLE batches DROP COLUMN IF EXISTS finished_counts;
ALTER TABLE batches DROP COLUMN IF EXISTS finished_status;
ALTER TABLE batches DROP COLUMN IF EXISTS finished_at;
ALTER TABLE uploads DROP COLUMN IF EXISTS eager_job_ids;
ALTER TABLE uploads DROP COLUMN IF EXISTS eager_jobs;
ALTER TABLE job_logs DROP COLUMN IF EXISTS result;
