-- The audit entries of tenant changes stay: the log is append-only.
DROP TABLE IF EXISTS tenants;
