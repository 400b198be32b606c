-- The same logical change as migrations/sqlite/0006_tenants.up.sql: a row per tenant with a
-- display name and a status; times in Unix milliseconds so both databases run the same SQL.
CREATE TABLE tenants (
    tenant_id     TEXT PRIMARY KEY,
    display_name  TEXT,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Every tenant that already has keys exists from now on, created when its first key was.
INSERT INTO tenants (tenant_id, status, created_at_ms, updated_at_ms)
SELECT tenant_id, 'active',
       (EXTRACT(EPOCH FROM MIN(created_at)) * 1000)::BIGINT,
       (EXTRACT(EPOCH FROM MIN(created_at)) * 1000)::BIGINT
FROM api_keys GROUP BY tenant_id;

-- …and the audit log says so (every tenant change has an entry).
INSERT INTO audit_log (at, tenant_id, actor, actor_tenant, action, target, detail)
SELECT MIN(created_at), tenant_id, 'migration', NULL, 'tenant.created', tenant_id,
       '{"implicit":true,"via":"migration 0006"}'
FROM api_keys GROUP BY tenant_id;
