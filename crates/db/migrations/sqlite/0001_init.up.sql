-- API keys. Only a SHA-256 of the secret is stored; `key_id` is the public prefix used to find
-- the row, so verification is one indexed lookup plus a constant-time hash comparison.
CREATE TABLE api_keys (
    key_id        TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT,
    revoked_at    TEXT,
    last_used_at  TEXT
);

-- Direct uploads. A row exists from init; the object exists once the signed POST succeeded.
-- `expires_at` is when the raw object (and an uncompleted upload) is swept.
CREATE TABLE uploads (
    upload_id             TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL,
    object_key            TEXT NOT NULL,
    declared_content_type TEXT NOT NULL,
    max_bytes             INTEGER NOT NULL,
    filename              TEXT,
    status                TEXT NOT NULL DEFAULT 'pending',
    content_type          TEXT,
    size                  INTEGER,
    width                 INTEGER,
    height                INTEGER,
    reject_code           TEXT,
    reason                TEXT,
    created_at            TEXT NOT NULL,
    url_expires_at        TEXT NOT NULL,
    expires_at_ms         INTEGER NOT NULL,
    uploaded_at           TEXT,
    completed_at          TEXT
);
CREATE INDEX idx_uploads_tenant ON uploads(tenant_id, upload_id);
CREATE INDEX idx_uploads_expiry ON uploads(expires_at_ms) WHERE status != 'expired';

-- Jobs: the columns of the design documents' `job_logs`, plus the queue's own. The Temporal
-- columns are NULL unless the Temporal engine runs the job. Scheduling columns are integer
-- milliseconds so comparisons never depend on a timestamp text format.
CREATE TABLE job_logs (
    id                   TEXT PRIMARY KEY,
    job_id               TEXT NOT NULL UNIQUE,
    job_type             TEXT NOT NULL,
    filename             TEXT,
    s3_key               TEXT,
    source_url           TEXT,
    content_type         TEXT,
    job_metadata         TEXT,
    temporal_workflow_id TEXT,
    temporal_task_queue  TEXT,
    created_at           TEXT NOT NULL,
    started_at           TEXT,
    completed_at         TEXT,
    status               TEXT NOT NULL DEFAULT 'submitted',
    error_message        TEXT,
    -- queue and tenancy
    tenant_id            TEXT NOT NULL,
    upload_id            TEXT,
    attempts             INTEGER NOT NULL DEFAULT 0,
    max_attempts         INTEGER NOT NULL,
    error_code           TEXT,
    outputs              TEXT,
    run_at_ms            INTEGER NOT NULL,
    lease_owner          TEXT,
    lease_token          TEXT,
    lease_expires_at_ms  INTEGER,
    updated_at           TEXT NOT NULL
);
CREATE INDEX idx_job_logs_job_id ON job_logs(job_id);
CREATE INDEX idx_job_logs_status ON job_logs(status);
CREATE INDEX idx_job_logs_created_at ON job_logs(created_at);
CREATE INDEX idx_job_logs_tenant ON job_logs(tenant_id, job_id);
-- The claim query scans only queued jobs and running jobs whose lease may have expired.
CREATE INDEX idx_job_logs_queue ON job_logs(run_at_ms) WHERE status IN ('submitted', 'retrying');
CREATE INDEX idx_job_logs_leases ON job_logs(lease_expires_at_ms) WHERE status = 'started';

-- Every status change and attempt, written by triggers in the same statement as the change, so
-- the history can never disagree with the job row.
CREATE TABLE job_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    status     TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    message    TEXT,
    at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX idx_job_events_job ON job_events(job_id, seq);

CREATE TRIGGER job_logs_insert_event AFTER INSERT ON job_logs
BEGIN
    INSERT INTO job_events (job_id, tenant_id, status, attempt, message)
    VALUES (NEW.job_id, NEW.tenant_id, NEW.status, NEW.attempts, NULL);
END;

CREATE TRIGGER job_logs_update_event AFTER UPDATE OF status, attempts ON job_logs
WHEN NEW.status IS NOT OLD.status OR NEW.attempts IS NOT OLD.attempts
BEGIN
    INSERT INTO job_events (job_id, tenant_id, status, attempt, message)
    VALUES (NEW.job_id, NEW.tenant_id, NEW.status, NEW.attempts,
            CASE WHEN NEW.status IN ('retrying', 'failed', 'dead') THEN NEW.error_message END);
END;
