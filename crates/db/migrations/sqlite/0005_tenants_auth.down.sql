DROP INDEX IF EXISTS idx_audit_log_tenant;
DROP TABLE IF EXISTS audit_log;
DROP INDEX IF EXISTS idx_api_keys_tenant;
