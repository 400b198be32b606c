-- The same logical schema as migrations/sqlite/0001_init.up.sql, in PostgreSQL's own types:
-- timestamps are TIMESTAMPTZ (microsecond precision), counters INTEGER/BIGINT. The scheduling
-- columns keep their integer-millisecond form and names (`run_at_ms`, …) so both databases
-- expose one `job_logs` layout and the queue code reads the same on both.

-- API keys. Only a SHA-256 of the secret is stored; `key_id` is the public prefix used to find
-- the row, so verification is one indexed lookup plus a constant-time hash comparison.
CREATE TABLE api_keys (
    key_id        TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ,
    last_used_at  TIMESTAMPTZ
);

-- Direct uploads. A row exists from init; the object exists once the signed POST succeeded.
-- `expires_at_ms` is when the raw object (and an uncompleted upload) is swept.
CREATE TABLE uploads (
    upload_id             TEXT COLLATE "C" PRIMARY KEY,
    tenant_id             TEXT NOT NULL,
    object_key            TEXT NOT NULL,
    declared_content_type TEXT NOT NULL,
    max_bytes             BIGINT NOT NULL,
    filename              TEXT,
    status                TEXT NOT NULL DEFAULT 'pending',
    content_type          TEXT,
    size                  BIGINT,
    width                 BIGINT,
    height                BIGINT,
    reject_code           TEXT,
    reason                TEXT,
    created_at            TIMESTAMPTZ NOT NULL,
    url_expires_at        TIMESTAMPTZ NOT NULL,
    expires_at_ms         BIGINT NOT NULL,
    uploaded_at           TIMESTAMPTZ,
    completed_at          TIMESTAMPTZ
);
CREATE INDEX idx_uploads_tenant ON uploads(tenant_id, upload_id);
CREATE INDEX idx_uploads_expiry ON uploads(expires_at_ms) WHERE status <> 'expired';

-- Jobs: the columns of the design documents' `job_logs`, plus the queue's own. The Temporal
-- columns are NULL unless the Temporal engine runs the job.
CREATE TABLE job_logs (
    id                   TEXT PRIMARY KEY,
    -- Byte order (as on SQLite), whatever the database's locale: UUIDv7 ids sort by time.
    job_id               TEXT COLLATE "C" NOT NULL UNIQUE,
    job_type             TEXT NOT NULL,
    filename             TEXT,
    s3_key               TEXT,
    source_url           TEXT,
    content_type         TEXT,
    job_metadata         TEXT,
    temporal_workflow_id TEXT,
    temporal_task_queue  TEXT,
    created_at           TIMESTAMPTZ NOT NULL,
    started_at           TIMESTAMPTZ,
    completed_at         TIMESTAMPTZ,
    status               TEXT NOT NULL DEFAULT 'submitted',
    error_message        TEXT,
    -- queue and tenancy
    tenant_id            TEXT NOT NULL,
    upload_id            TEXT,
    attempts             BIGINT NOT NULL DEFAULT 0,
    max_attempts         BIGINT NOT NULL,
    error_code           TEXT,
    outputs              TEXT,
    run_at_ms            BIGINT NOT NULL,
    lease_owner          TEXT,
    lease_token          TEXT,
    lease_expires_at_ms  BIGINT,
    updated_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_job_logs_job_id ON job_logs(job_id);
CREATE INDEX idx_job_logs_status ON job_logs(status);
CREATE INDEX idx_job_logs_created_at ON job_logs(created_at);
CREATE INDEX idx_job_logs_tenant ON job_logs(tenant_id, job_id);
-- The claim query scans only queued jobs and running jobs whose lease may have expired.
CREATE INDEX idx_job_logs_queue ON job_logs(run_at_ms, job_id) WHERE status IN ('submitted', 'retrying');
CREATE INDEX idx_job_logs_leases ON job_logs(lease_expires_at_ms) WHERE status = 'started';

-- Every status change and attempt, written by triggers in the same statement as the change, so
-- the history can never disagree with the job row.
CREATE TABLE job_events (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    status     TEXT NOT NULL,
    attempt    BIGINT NOT NULL,
    message    TEXT,
    at         TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX idx_job_events_job ON job_events(job_id, seq);

CREATE FUNCTION job_logs_event() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER job_logs_insert_event AFTER INSERT ON job_logs
    FOR EACH ROW EXECUTE FUNCTION job_logs_event();
CREATE TRIGGER job_logs_update_event AFTER UPDATE OF status, attempts ON job_logs
    FOR EACH ROW EXECUTE FUNCTION job_logs_event();

-- Wakes idle workers (LISTEN photo_jobs) when a job becomes claimable: queued, handed back, or
-- scheduled for a retry. PostgreSQL delivers the notification at commit and folds identical
-- ones of a transaction into one. Workers still poll, for retries that come due later and for
-- leases that expire.
CREATE FUNCTION job_logs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('photo_jobs', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER job_logs_notify AFTER INSERT OR UPDATE OF status ON job_logs
    FOR EACH ROW WHEN (NEW.status IN ('submitted', 'retrying'))
    EXECUTE FUNCTION job_logs_notify();
