-- Job kinds `variants` and `analyze`, eager jobs of uploads (presets) and batch webhook events
-- (issue 8). Number 0006 belongs to another change; the migrator applies what is missing in list
-- order and never assumes versions are contiguous.

-- What a job found (the `analyze` report; JSON), beside its outputs.
ALTER TABLE job_logs ADD COLUMN result TEXT;

-- Jobs an upload queues when it completes ready (a preset or the init request's own list), as
-- validated job specs (JSON), and the ids of the jobs its completion queued: they are inserted
-- in the transaction that makes the upload ready, so completing twice never queues twice.
ALTER TABLE uploads ADD COLUMN eager_jobs TEXT;
ALTER TABLE uploads ADD COLUMN eager_job_ids TEXT;

-- A batch is finished when its last job reaches a terminal status; `finished_status` is
-- `failed` when any job ended failed or dead, else `completed`; `finished_counts` holds the
-- per-status counts (JSON) at that moment. Set once, never again (a retried job does not
-- reopen its batch).
ALTER TABLE batches ADD COLUMN finished_at TEXT;
ALTER TABLE batches ADD COLUMN finished_status TEXT;
ALTER TABLE batches ADD COLUMN finished_counts TEXT;

-- `job` rows are a job's status changes; `batch` rows (job_id = the batch id, status = the
-- batch's finished_status) are the `batch.completed` / `batch.failed` events the webhook fan-out
-- reads with the same cursor. The event streams show `job` rows only.
ALTER TABLE job_events ADD COLUMN kind TEXT NOT NULL DEFAULT 'job';

-- The event trigger of 0001, plus the batch check, in the statement (so the transaction) that
-- makes a batch's job terminal: the job that leaves no unfinished job in its batch finishes the
-- batch and records its event. SQLite has one writer at a time, so "am I the last" cannot race;
-- `finished_at IS NULL` makes it once per batch.
DROP TRIGGER job_logs_update_event;
CREATE TRIGGER job_logs_update_event AFTER UPDATE OF status, attempts ON job_logs
WHEN NEW.status IS NOT OLD.status OR NEW.attempts IS NOT OLD.attempts
BEGIN
    INSERT INTO job_events (job_id, tenant_id, status, attempt, message)
    VALUES (NEW.job_id, NEW.tenant_id, NEW.status, NEW.attempts,
            CASE WHEN NEW.status IN ('retrying', 'failed', 'dead') THEN NEW.error_message END);
    UPDATE batches SET
        finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        finished_status = CASE WHEN EXISTS (
                SELECT 1 FROM job_logs WHERE batch_id = NEW.batch_id AND status IN ('failed', 'dead'))
            THEN 'failed' ELSE 'completed' END,
        finished_counts = (
            SELECT json_object(
                'completed', COALESCE(SUM(status = 'completed'), 0),
                'failed', COALESCE(SUM(status = 'failed'), 0),
                'dead', COALESCE(SUM(status = 'dead'), 0),
                'cancelled', COALESCE(SUM(status = 'cancelled'), 0))
            FROM job_logs WHERE batch_id = NEW.batch_id)
    WHERE NEW.batch_id IS NOT NULL
      AND NEW.status IN ('completed', 'failed', 'dead', 'cancelled')
      AND OLD.status NOT IN ('completed', 'failed', 'dead', 'cancelled')
      AND batch_id = NEW.batch_id AND finished_at IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM job_logs WHERE batch_id = NEW.batch_id
            AND status NOT IN ('completed', 'failed', 'dead', 'cancelled'));
    -- A finished batch without its event: the update above finished it just now.
    INSERT INTO job_events (job_id, tenant_id, status, attempt, message, kind)
    SELECT b.batch_id, b.tenant_id, b.finished_status, 0, NULL, 'batch'
    FROM batches b
    WHERE NEW.batch_id IS NOT NULL AND b.batch_id = NEW.batch_id AND b.finished_at IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM job_events e WHERE e.job_id = NEW.batch_id AND e.kind = 'batch');
END;
