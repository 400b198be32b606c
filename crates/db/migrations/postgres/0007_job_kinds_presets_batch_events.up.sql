-- The same logical change as migrations/sqlite/0007_job_kinds_presets_batch_events.up.sql:
-- job kinds `variants` and `analyze`, eager jobs of uploads (presets) and batch webhook events
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
ALTER TABLE batches ADD COLUMN finished_at TIMESTAMPTZ;
ALTER TABLE batches ADD COLUMN finished_status TEXT;
ALTER TABLE batches ADD COLUMN finished_counts TEXT;

-- `job` rows are a job's status changes; `batch` rows (job_id = the batch id, status = the
-- batch's finished_status) are the `batch.completed` / `batch.failed` events the webhook fan-out
-- reads with the same cursor. The event streams show `job` rows only.
ALTER TABLE job_events ADD COLUMN kind TEXT NOT NULL DEFAULT 'job';

-- The event trigger of 0004, plus the batch check in the transaction that makes a batch's job
-- terminal. "Am I the last?" must not race: two jobs finishing at once in READ COMMITTED could
-- each see the other still running and neither finish the batch. So the check first locks the
-- batch row (FOR UPDATE; every finishing transaction of the batch queues there), then looks at
-- the batch's jobs in a new statement — a new snapshot that sees every transaction that held the
-- lock before. The job row is always locked before the batch row (here; cancel_batch updates
-- its jobs before its batch row), so the two locks never deadlock. `finished_at IS NULL` makes
-- it once per batch.
CREATE OR REPLACE FUNCTION job_logs_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    batch_status TEXT;
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
        IF NEW.batch_id IS NOT NULL
           AND NEW.status IN ('completed', 'failed', 'dead', 'cancelled')
           AND OLD.status NOT IN ('completed', 'failed', 'dead', 'cancelled') THEN
            PERFORM 1 FROM batches WHERE batch_id = NEW.batch_id FOR UPDATE;
            IF NOT EXISTS (
                SELECT 1 FROM job_logs WHERE batch_id = NEW.batch_id
                  AND status NOT IN ('completed', 'failed', 'dead', 'cancelled')) THEN
                UPDATE batches SET
                    finished_at = clock_timestamp(),
                    finished_status = CASE WHEN EXISTS (
                            SELECT 1 FROM job_logs
                            WHERE batch_id = NEW.batch_id AND status IN ('failed', 'dead'))
                        THEN 'failed' ELSE 'completed' END,
                    finished_counts = (
                        SELECT json_build_object(
                            'completed', COUNT(*) FILTER (WHERE status = 'completed'),
                            'failed', COUNT(*) FILTER (WHERE status = 'failed'),
                            'dead', COUNT(*) FILTER (WHERE status = 'dead'),
                            'cancelled', COUNT(*) FILTER (WHERE status = 'cancelled'))::text
                        FROM job_logs WHERE batch_id = NEW.batch_id)
                WHERE batch_id = NEW.batch_id AND finished_at IS NULL
                RETURNING finished_status INTO batch_status;
                IF batch_status IS NOT NULL THEN
                    INSERT INTO job_events (job_id, tenant_id, status, attempt, message, kind)
                    VALUES (NEW.batch_id, NEW.tenant_id, batch_status, 0, NULL, 'batch');
                END IF;
            END IF;
        END IF;
    END IF;
    RETURN NULL;
END;
$$;
