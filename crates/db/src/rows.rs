//! Row decoding shared by the SQLite and PostgreSQL repositories. Both schemas use the same
//! column names and value forms (text ids, JSON text, integer milliseconds for scheduling), so
//! one decoder body serves both; the macro instantiates it for each driver's row type.

use chrono::{DateTime, TimeZone, Utc};
use std::str::FromStr;

use crate::{DbError, DbResult};

/// Milliseconds since the epoch, the form of the scheduling columns.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// [`ms`] back.
pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

pub(crate) fn corrupt(what: &str, v: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(format!("{what}: {v}"))
}

pub(crate) fn parse<T: FromStr>(what: &str, s: &str) -> DbResult<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| corrupt(what, e))
}

/// Defines `upload_from_row`, `job_from_row` and `api_key_from_row` for a driver's row type.
macro_rules! decoders {
    ($row:ty) => {
        fn upload_from_row(r: &$row) -> DbResult<Upload> {
            let opt_ct = |col: &str| -> DbResult<Option<ContentType>> {
                r.try_get::<Option<String>, _>(col)?
                    .map(|s| ContentType::parse(&s).map_err(|e| corrupt(col, e)))
                    .transpose()
            };
            let declared: String = r.try_get("declared_content_type")?;
            let status: String = r.try_get("status")?;
            Ok(Upload {
                upload_id: parse("upload_id", &r.try_get::<String, _>("upload_id")?)?,
                tenant: TenantId::parse(&r.try_get::<String, _>("tenant_id")?)
                    .map_err(|e| corrupt("tenant", e))?,
                key: ObjectKey::parse(&r.try_get::<String, _>("object_key")?)
                    .map_err(|e| corrupt("key", e))?,
                declared: ContentType::parse(&declared).map_err(|e| corrupt("declared", e))?,
                max_bytes: r.try_get::<i64, _>("max_bytes")?.max(0) as u64,
                filename: r.try_get("filename")?,
                status: UploadStatus::parse(&status)
                    .ok_or_else(|| corrupt("upload status", &status))?,
                content_type: opt_ct("content_type")?,
                size: r
                    .try_get::<Option<i64>, _>("size")?
                    .map(|v| v.max(0) as u64),
                width: r
                    .try_get::<Option<i64>, _>("width")?
                    .map(|v| v.clamp(0, u32::MAX as i64) as u32),
                height: r
                    .try_get::<Option<i64>, _>("height")?
                    .map(|v| v.clamp(0, u32::MAX as i64) as u32),
                reject_code: r.try_get("reject_code")?,
                reason: r.try_get("reason")?,
                created_at: r.try_get("created_at")?,
                url_expires_at: r.try_get("url_expires_at")?,
                expires_at: from_ms(r.try_get("expires_at_ms")?),
                uploaded_at: r.try_get("uploaded_at")?,
                completed_at: r.try_get("completed_at")?,
                file_path: r
                    .try_get::<Option<String>, _>("file_path")?
                    .map(|p| photo_core::FilePath::parse(&p).map_err(|e| corrupt("file_path", e)))
                    .transpose()?,
                file_overwrite: r.try_get::<Option<i64>, _>("file_overwrite")?.unwrap_or(0) != 0,
                eager_jobs: match r.try_get::<Option<String>, _>("eager_jobs")? {
                    Some(s) => serde_json::from_str(&s).map_err(|e| corrupt("eager_jobs", e))?,
                    None => Vec::new(),
                },
                eager_job_ids: match r.try_get::<Option<String>, _>("eager_job_ids")? {
                    Some(s) => serde_json::from_str::<Vec<String>>(&s)
                        .map_err(|e| corrupt("eager_job_ids", e))?
                        .iter()
                        .map(|id| parse("eager_job_ids", id))
                        .collect::<DbResult<Vec<_>>>()?,
                    None => Vec::new(),
                },
            })
        }

        fn job_from_row(r: &$row) -> DbResult<Job> {
            let job_type: String = r.try_get("job_type")?;
            let status: String = r.try_get("status")?;
            let meta: Option<String> = r.try_get("job_metadata")?;
            let spec: JobSpec = serde_json::from_str(meta.as_deref().unwrap_or("null"))
                .map_err(|e| corrupt("job_metadata", e))?;
            let outputs: Vec<JobOutput> = match r.try_get::<Option<String>, _>("outputs")? {
                Some(s) => serde_json::from_str(&s).map_err(|e| corrupt("outputs", e))?,
                None => Vec::new(),
            };
            Ok(Job {
                job_id: parse("job_id", &r.try_get::<String, _>("job_id")?)?,
                tenant: TenantId::parse(&r.try_get::<String, _>("tenant_id")?)
                    .map_err(|e| corrupt("tenant", e))?,
                job_type: JobType::parse(&job_type)
                    .ok_or_else(|| corrupt("job_type", &job_type))?,
                spec,
                upload_id: r
                    .try_get::<Option<String>, _>("upload_id")?
                    .map(|s| parse("upload_id", &s))
                    .transpose()?,
                s3_key: r
                    .try_get::<Option<String>, _>("s3_key")?
                    .map(|s| ObjectKey::parse(&s).map_err(|e| corrupt("s3_key", e)))
                    .transpose()?,
                source_url: r.try_get("source_url")?,
                filename: r.try_get("filename")?,
                content_type: r
                    .try_get::<Option<String>, _>("content_type")?
                    .and_then(|s| ContentType::parse(&s).ok()),
                status: JobStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
                attempts: r.try_get::<i64, _>("attempts")?.clamp(0, u32::MAX as i64) as u32,
                max_attempts: r
                    .try_get::<i64, _>("max_attempts")?
                    .clamp(0, u32::MAX as i64) as u32,
                error_code: r.try_get("error_code")?,
                error_message: r.try_get("error_message")?,
                outputs,
                result: r
                    .try_get::<Option<String>, _>("result")?
                    .map(|s| serde_json::from_str(&s).map_err(|e| corrupt("result", e)))
                    .transpose()?,
                created_at: r.try_get("created_at")?,
                started_at: r.try_get("started_at")?,
                completed_at: r.try_get("completed_at")?,
                updated_at: r.try_get("updated_at")?,
                run_at: from_ms(r.try_get("run_at_ms")?),
                lease_owner: r.try_get("lease_owner")?,
                trace_context: r.try_get("trace_context")?,
                engine: {
                    let e: String = r.try_get("engine")?;
                    JobEngine::parse(&e).ok_or_else(|| corrupt("engine", &e))?
                },
                temporal: match (
                    r.try_get::<Option<String>, _>("temporal_workflow_id")?,
                    r.try_get::<Option<String>, _>("temporal_task_queue")?,
                ) {
                    (Some(workflow_id), Some(task_queue)) => Some(TemporalRoute {
                        workflow_id,
                        task_queue,
                    }),
                    _ => None,
                },
                batch_id: r
                    .try_get::<Option<String>, _>("batch_id")?
                    .map(|s| parse("batch_id", &s))
                    .transpose()?,
            })
        }

        fn audit_from_row(r: &$row) -> DbResult<AuditEntry> {
            let tenant = |col: &str| -> DbResult<Option<TenantId>> {
                r.try_get::<Option<String>, _>(col)?
                    .map(|s| TenantId::parse(&s).map_err(|e| corrupt(col, e)))
                    .transpose()
            };
            let detail: String = r.try_get("detail")?;
            Ok(AuditEntry {
                seq: r.try_get("seq")?,
                tenant: tenant("tenant_id")?.ok_or_else(|| corrupt("tenant_id", "null"))?,
                entry: NewAuditEntry {
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    actor_tenant: tenant("actor_tenant")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    detail: serde_json::from_str(&detail).map_err(|e| corrupt("detail", e))?,
                },
            })
        }

        fn api_key_from_row(r: &$row) -> DbResult<ApiKeyRecord> {
            let scopes: String = r.try_get("scopes")?;
            Ok(ApiKeyRecord {
                key_id: r.try_get("key_id")?,
                tenant: TenantId::parse(&r.try_get::<String, _>("tenant_id")?)
                    .map_err(|e| corrupt("tenant", e))?,
                name: r.try_get("name")?,
                secret_sha256: r.try_get("secret_sha256")?,
                scopes: scopes
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
                revoked_at: r.try_get("revoked_at")?,
                last_used_at: r.try_get("last_used_at")?,
            })
        }
    };
}
pub(crate) use decoders;
