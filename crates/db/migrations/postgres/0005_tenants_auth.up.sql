-- The same logical change as migrations/sqlite/0005_tenants_auth.up.sql (0003 and 0004 are
-- reserved for other work; the migrator applies whatever is missing, so a gap is fine).

CREATE INDEX idx_api_keys_tenant ON api_keys(tenant_id, created_at);

-- Every admin action, written in the same transaction as the action itself. `tenant_id` is the
-- tenant acted upon; `actor` a key id, `bootstrap` (API_KEY), `jwt:<subject>` or `cli`.
CREATE TABLE audit_log (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL,
    tenant_id    TEXT NOT NULL,
    actor        TEXT NOT NULL,
    actor_tenant TEXT,
    action       TEXT NOT NULL,
    target       TEXT,
    detail       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX idx_audit_log_tenant ON audit_log(tenant_id, seq);
