-- Tenants, keys and the audit log (issue 7). Numbered 0005: 0003 and 0004 are reserved for other
-- work; the migrator applies whatever is missing, so a gap is fine.

-- Keys are listed per tenant by the admin API and `photo-api keys list`.
CREATE INDEX idx_api_keys_tenant ON api_keys(tenant_id, created_at);

-- Every admin action (key created, key revoked), written in the same transaction as the action
-- itself, so the log can never miss one. `tenant_id` is the tenant acted upon; `actor` is who
-- did it: a key id, `bootstrap` (API_KEY), `jwt:<subject>` or `cli`. `detail` is JSON text.
CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    tenant_id    TEXT NOT NULL,
    actor        TEXT NOT NULL,
    actor_tenant TEXT,
    action       TEXT NOT NULL,
    target       TEXT,
    detail       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX idx_audit_log_tenant ON audit_log(tenant_id, seq);
