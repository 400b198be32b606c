ALTER TABLE uploads DROP COLUMN file_overwrite;
ALTER TABLE uploads DROP COLUMN file_path;
DROP TABLE file_gc;
DROP TABLE files;
