-- The W3C traceparent of the request that submitted a job (when tracing is on), so the job's
-- spans join the request's trace.
ALTER TABLE job_logs ADD COLUMN trace_context TEXT;
