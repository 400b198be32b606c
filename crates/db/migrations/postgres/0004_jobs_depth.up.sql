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
