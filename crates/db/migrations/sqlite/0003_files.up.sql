-- The tenant file tree of the file API (/files/...): one row per file and per folder. A file's
-- bytes are in the processed bucket under an id-based key (tenants/{tenant}/files/{id}.{ext}),
-- never under the user's path, so moving or renaming anything is a row update and no path a
-- client sends can reach the storage layer. Copies share their object.
-- Paths compare in byte order on both databases (COLLATE "C" on PostgreSQL): listings are
-- stable and "everything inside folder F" is the range F/ < path < F0.
CREATE TABLE files (
    tenant_id     TEXT NOT NULL,
    path          TEXT NOT NULL,
    parent        TEXT NOT NULL,
    name          TEXT NOT NULL,
    is_folder     BIGINT NOT NULL,
    object_key    TEXT,
    size          BIGINT,
    content_type  TEXT,
    etag          TEXT,
    width         BIGINT,
    height        BIGINT,
    metadata      TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, path)
);
CREATE INDEX idx_files_parent ON files(tenant_id, parent, name);
CREATE INDEX idx_files_object ON files(object_key);

-- Objects to delete once no file row points to them: deleted files (after a grace period, so a
-- download already streaming finishes) and write intents (an upload interrupted before its row
-- landed leaves an object nothing points to).
CREATE TABLE file_gc (
    object_key    TEXT PRIMARY KEY,
    not_before_ms BIGINT NOT NULL
);
CREATE INDEX idx_file_gc_due ON file_gc(not_before_ms);

-- A direct upload that becomes a tenant file when completed (POST /files/presigned-upload).
ALTER TABLE uploads ADD COLUMN file_path TEXT;
ALTER TABLE uploads ADD COLUMN file_overwrite BIGINT;
