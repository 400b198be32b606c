-- The event trigger of 0001, without the ordering lock.
CREATE OR REPLACE FUNCTION job_logs_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
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
DROP TABLE IF EXISTS webhook_cursor;
DROP TABLE IF EXISTS webhook_deliveries;
DROP TABLE IF EXISTS webhooks;
DROP INDEX IF EXISTS idx_job_events_tenant;
DROP INDEX IF EXISTS idx_job_logs_batch;
ALTER TABLE job_logs DROP COLUMN IF EXISTS batch_id;
DROP TABLE IF EXISTS batches;
DROP TABLE IF EXISTS idempotency_keys;
