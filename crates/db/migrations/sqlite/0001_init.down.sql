DROP TRIGGER IF EXISTS job_logs_update_event;
DROP TRIGGER IF EXISTS job_logs_insert_event;
DROP TABLE IF EXISTS job_events;
DROP TABLE IF EXISTS job_logs;
DROP TABLE IF EXISTS uploads;
DROP TABLE IF EXISTS api_keys;
