-- Tenants (issue 7): a row per tenant with a display name and a status. A suspended tenant's
-- keys and tokens are refused (403 tenant_suspended). A tenant without a row (a JWT's tenant, or
-- `default` while only the bootstrap API_KEY exists) counts as active; creating a key for an
-- unknown tenant creates its row. Times are Unix milliseconds, as in the file tree, so both
-- databases run the same SQL.
CREATE TABLE tenants (
    tenant_id     TEXT PRIMARY KEY,
    display_name  TEXT,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- Every tenant that already has keys exists from now on, created when its first key was.
INSERT INTO tenants (tenant_id, status, created_at_ms, updated_at_ms)
SELECT tenant_id, 'active',
       CAST(ROUND((julianday(MIN(created_at)) - 2440587.5) * 86400000) AS INTEGER),
       CAST(ROUND((julianday(MIN(created_at)) - 2440587.5) * 86400000) AS INTEGER)
FROM api_keys GROUP BY tenant_id;

-- …and the audit log says so (every tenant change has an entry).
INSERT INTO audit_log (at, tenant_id, actor, actor_tenant, action, target, detail)
SELECT MIN(created_at), tenant_id, 'migration', NULL, 'tenant.created', tenant_id,
       '{"implicit":true,"via":"migration 0006"}'
FROM api_keys GROUP BY tenant_id;
