-- The same logical change as migrations/sqlite/0004_jobs_depth.up.sql (issue 8). Number 0003
-- belongs to another change; the migrator applies what is missing in list order and never
-- assumes versions are contiguous.

-- Idempotency keys of POST /jobs, POST /uploads/init and POST /batches, per tenant and route
-- (`scope`). A row is reserved (status_code NULL) before the request runs, so concurrent
-- requests with one key find it and wait for its result instead of running again; the stored
-- response is replayed until `expires_at_ms`, then swept.
CREATE TABLE idempotency_keys (
    tenant_id      TEXT NOT NULL,
    scope          TEXT NOT NULL,
    idem_key       TEXT NOT NULL,
    -- SHA-256 of the request body (canonical JSON): the same key with another body is refused.
    request_sha256 TEXT NOT NULL,
    status_code    BIGINT,
    response_body  TEXT,
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, scope, idem_key)
);
CREATE INDEX idx_idempotency_keys_expiry ON idempotency_keys(expires_at_ms);

-- Batches: many jobs submitted together. The batch's jobs are inserted with it in one
-- transaction, so counting them per status (one statement) always adds up to `total`.
CREATE TABLE batches (
    batch_id     TEXT COLLATE "C" PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    total        BIGINT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    cancelled_at TIMESTAMPTZ
);
CREATE INDEX idx_batches_tenant ON batches(tenant_id, batch_id);
ALTER TABLE job_logs ADD COLUMN batch_id TEXT COLLATE "C";
CREATE INDEX idx_job_logs_batch ON job_logs(batch_id, job_id) WHERE batch_id IS NOT NULL;

-- Event streams (GET /events, GET /jobs/{id}/events) resume after the last `seq` a client saw.
-- An identity column hands out numbers at insert, not at commit: a transaction that took seq 7
-- and commits after one that took seq 8 would let a reader that already passed 8 miss 7. So
-- each event insert first takes one transaction-scoped advisory lock, held until commit: event
-- transactions commit in seq order, and "seq > last seen" never skips one. (SQLite has a
-- single writer, so its order is commit order already.)
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
CREATE INDEX idx_job_events_tenant ON job_events(tenant_id, seq);

-- Webhooks per tenant, and their deliveries: one row per (webhook, event), created by the
-- fan-out from `job_events` (the unique key makes it exactly one however often it runs), sent
-- and retried with backoff by `serve`.
CREATE TABLE webhooks (
    webhook_id  TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    url         TEXT NOT NULL,
    event_types TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_webhooks_tenant ON webhooks(tenant_id);
CREATE TABLE webhook_deliveries (
    delivery_id        TEXT COLLATE "C" PRIMARY KEY,
    webhook_id         TEXT NOT NULL,
    tenant_id          TEXT NOT NULL,
    event_seq          BIGINT NOT NULL,
    event_type         TEXT NOT NULL,
    payload            TEXT NOT NULL,
    status             TEXT NOT NULL DEFAULT 'pending',
    attempts           BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    last_status_code   BIGINT,
    last_error         TEXT,
    created_at         TIMESTAMPTZ NOT NULL,
    delivered_at       TIMESTAMPTZ,
    UNIQUE (webhook_id, event_seq)
);
CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries(next_attempt_at_ms) WHERE status = 'pending';
CREATE INDEX idx_webhook_deliveries_hook ON webhook_deliveries(webhook_id, delivery_id);
-- How far the fan-out has read job_events.
CREATE TABLE webhook_cursor (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL
);
INSERT INTO webhook_cursor (id, last_seq) VALUES (1, 0);
