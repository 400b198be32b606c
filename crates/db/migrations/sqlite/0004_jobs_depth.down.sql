DROP TABLE IF EXISTS webhook_cursor;
DROP TABLE IF EXISTS webhook_deliveries;
DROP TABLE IF EXISTS webhooks;
DROP INDEX IF EXISTS idx_job_events_tenant;
DROP INDEX IF EXISTS idx_job_logs_batch;
ALTER TABLE job_logs DROP COLUMN batch_id;
DROP TABLE IF EXISTS batches;
DROP TABLE IF EXISTS idempotency_keys;
