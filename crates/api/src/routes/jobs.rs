//! Jobs: submit, inspect, list.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use photo_core::{ErrorCode, JobId, JobSpec, JobStatus, JobType};
use photo_db::{Job, JobFilter, NewJob, UploadStatus};
use photo_storage::Bucket;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

/// Largest page of `GET /jobs`.
pub const MAX_PAGE: u32 = 200;

/// `POST /jobs` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// `thumbnail`, `transform`, `variants` or `analyze`.
    #[schema(example = "thumbnail")]
    pub job_type: String,
    /// The source: a ready upload of the caller's.
    #[serde(default)]
    pub upload_id: Option<String>,
    /// Reserved: a key in the raw bucket (not accepted yet; use `upload_id`).
    #[serde(default)]
    pub s3_key: Option<String>,
    /// Or: an `http(s)://` URL the worker fetches (size, time and redirect caps; loopback,
    /// private, link-local and metadata addresses refused unless allow-listed).
    #[serde(default)]
    pub source_url: Option<String>,
    /// Parameters of the job type. thumbnail: `width`, `height`, `format` (jpeg|png|webp),
    /// `quality`. transform: `width`, `height`, `fit` (contain|cover|fill|inside|outside),
    /// `upscale`, `format`, `quality`, `auto_orient`, `strip_metadata`. variants
    /// (schema `VariantsParams`): `variants`, 1..=16 of `{name, width, height, fit, upscale,
    /// format, quality}` rendered from one decode, each output stored as `{name}.{ext}`. analyze
    /// (schema `AnalyzeParams`): `keep_gps` (default false), `dominant_colors` (1..=8,
    /// default 5); the report is the job's `result`.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"width": 256, "height": 256, "format": "jpeg", "quality": 80}))]
    pub params: serde_json::Value,
}

/// One output of a job.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OutputView {
    /// Output name.
    pub name: String,
    /// Key in the processed bucket.
    pub key: String,
    /// Signed download URL; works without the API key until `url_expires_at`.
    pub url: String,
    /// When `url` stops working.
    pub url_expires_at: DateTime<Utc>,
    /// MIME type.
    pub content_type: String,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Bytes.
    pub size: u64,
}

/// The `analyze` report, recorded as the job's `result`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AnalyzeResult {
    /// Sniffed format: `jpeg`, `png`, `webp`, `gif`, `tiff`, `heic`, `heif` or `avif`.
    pub format: String,
    /// Its media type.
    pub content_type: String,
    /// Width as displayed (after EXIF orientation).
    pub width: u32,
    /// Height as displayed.
    pub height: u32,
    /// Frames (1 for still images).
    pub frames: u32,
    /// Some pixel is not fully opaque.
    pub has_alpha: bool,
    /// EXIF summary (absent fields left out); `gps` only with `keep_gps: true`.
    #[schema(value_type = Option<Object>, example = json!({"make": "Canon", "model": "EOS R5", "datetime": "2024:05:01 12:00:00", "orientation": 1, "exposure_time": "1/250", "f_number": 2.8, "iso": 100, "focal_length_mm": 35.0, "gps": {"latitude": 48.8584, "longitude": 2.2945, "altitude_m": 35.0}}))]
    pub exif: Option<serde_json::Value>,
    /// BlurHash placeholder (4×3 components, 3×4 for portrait).
    pub blurhash: String,
    /// 64-bit difference hash (dHash), 16 hex digits; near-duplicates differ in few bits.
    pub dhash: String,
    /// Dominant colours, most common first: `{hex, rgb, fraction}`.
    #[schema(value_type = Vec<Object>, example = json!([{"hex": "#3a6ea5", "rgb": [58, 110, 165], "fraction": 0.42}]))]
    pub dominant_colors: Vec<serde_json::Value>,
    /// SHA-256 of the source bytes, lowercase hex.
    pub sha256: String,
}

/// One status change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// Status entered.
    pub status: String,
    /// Attempt number.
    pub attempt: u32,
    /// Error, for failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When.
    pub at: String,
}

/// A job.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    /// Id.
    pub job_id: String,
    /// Type.
    pub job_type: JobType,
    /// `submitted`, `started`, `retrying`, `completed`, `failed`, `dead` or `cancelled`.
    pub status: JobStatus,
    /// Attempts started.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Queued at.
    pub created_at: DateTime<Utc>,
    /// First started.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// Earliest next attempt (while `retrying`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Stable code of the last error.
    pub error_code: Option<String>,
    /// Last error.
    pub error_message: Option<String>,
    /// The worker holding the job's lease (while `started`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Source upload.
    pub upload_id: Option<String>,
    /// Source key.
    pub s3_key: Option<String>,
    /// Source URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// Source file name.
    pub filename: Option<String>,
    /// Parameters as accepted (defaults filled in).
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Outputs, once completed (a `variants` job: one per variant, named after it).
    pub outputs: Vec<OutputView>,
    /// What the job found, once completed: the `analyze` report (schema `AnalyzeResult`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<AnalyzeResult>)]
    pub result: Option<serde_json::Value>,
    /// The engine running the job: `sql` (our own queue) or `temporal`.
    pub engine: String,
    /// The Temporal workflow id (engine `temporal`), e.g. `photo-job-<job_id>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporal_workflow_id: Option<String>,
    /// The Temporal task queue (engine `temporal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporal_task_queue: Option<String>,
    /// The batch it was submitted in (`POST /batches`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// The trace id of the request that submitted it (with tracing on): its spans, and the
    /// job's, are under this id in the trace backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Status history (only on `GET /jobs/{job_id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryEntry>>,
}

pub(crate) fn view(st: &AppState, job: &Job) -> JobView {
    let url_expires_at =
        Utc::now() + chrono::Duration::from_std(st.cfg.download_url_ttl).unwrap_or_default();
    let params = match serde_json::to_value(&job.spec) {
        Ok(serde_json::Value::Object(mut m)) => m.remove("params").unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    JobView {
        job_id: job.job_id.to_string(),
        job_type: job.job_type,
        status: job.status,
        attempts: job.attempts,
        max_attempts: job.max_attempts,
        created_at: job.created_at,
        started_at: job.started_at,
        completed_at: job.completed_at,
        next_attempt_at: (job.status == JobStatus::Retrying).then_some(job.run_at),
        error_code: job.error_code.clone(),
        error_message: job.error_message.clone(),
        worker: job.lease_owner.clone(),
        upload_id: job.upload_id.map(|u| u.to_string()),
        s3_key: job.s3_key.as_ref().map(ToString::to_string),
        source_url: job.source_url.clone(),
        filename: job.filename.clone(),
        trace_id: job
            .trace_context
            .as_deref()
            .and_then(photo_core::telemetry::trace_id_of)
            .map(str::to_owned),
        params,
        outputs: job
            .outputs
            .iter()
            .map(|o| OutputView {
                name: o.name.clone(),
                key: o.key.to_string(),
                url: st
                    .store
                    .presign_get(Bucket::Processed, &o.key, url_expires_at),
                url_expires_at,
                content_type: o.content_type.clone(),
                width: o.width,
                height: o.height,
                size: o.size,
            })
            .collect(),
        result: job.result.clone(),
        engine: job.engine.as_str().to_owned(),
        temporal_workflow_id: job.temporal.as_ref().map(|t| t.workflow_id.clone()),
        temporal_task_queue: job.temporal.as_ref().map(|t| t.task_queue.clone()),
        batch_id: job.batch_id.map(|b| b.to_string()),
        history: None,
    }
}

pub(crate) fn unprocessable(code: ErrorCode, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
}

/// Queues a job on a ready upload. Answers at once with the job id; a worker runs it. With an
/// `Idempotency-Key` header, a repeat of the same body answers with the first job (header
/// `Idempotent-Replayed: true`) instead of queuing another.
#[utoipa::path(post, path = "/jobs", tag = "jobs", request_body = SubmitRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1..=255 printable ASCII characters; the same key and body return the same job")),
    responses(
        (status = 202, description = "Queued", body = JobView),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 404, description = "Unknown upload (or another tenant's)", body = Problem),
        (status = 409, description = "The upload is not ready (`upload_not_ready`)", body = Problem),
        (status = 422, description = "Unknown job type, bad params (`invalid_parameters`), no source; `idempotency_key_reused`", body = Problem)))]
pub async fn submit(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Response> {
    let req: SubmitRequest = crate::extract::from_json_value(body.clone())?;
    crate::idempotency::idempotent(
        &st,
        &caller,
        "POST /jobs",
        &headers,
        &body,
        submit_job(&st, &caller, req),
    )
    .await
}

/// Checks a job request (type, parameters, a ready upload of the caller's) and makes the row
/// to insert. Shared by `POST /jobs` and `POST /batches`.
pub(crate) async fn prepare_job(
    st: &AppState,
    caller: &Caller,
    job_type: &str,
    upload_id: Option<&str>,
    params: serde_json::Value,
) -> ApiResult<NewJob> {
    let job_type = JobType::parse(job_type).ok_or_else(|| {
        unprocessable(
            ErrorCode::InvalidParameters,
            format!("unknown job_type {job_type:?}; use thumbnail, transform, variants or analyze"),
        )
    })?;
    let spec = JobSpec::parse(job_type, params)
        .map_err(|e| unprocessable(ErrorCode::InvalidParameters, e.to_string()))?;
    let Some(upload_id) = upload_id else {
        return Err(unprocessable(
            ErrorCode::InvalidRequest,
            "upload_id is required",
        ));
    };
    let up = crate::routes::uploads::tenant_upload(st, caller, upload_id).await?;
    // A ready upload has left the quarantine; a quarantined key is never a job's source.
    if up.status != UploadStatus::Ready || up.key.is_quarantined() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::UploadNotReady,
            format!(
                "the upload is {}; only ready uploads can be processed (call POST /uploads/{}/complete)",
                up.status.as_str(),
                up.upload_id
            ),
        ));
    }
    let job_id = JobId::new();
    Ok(NewJob {
        job_id,
        tenant: caller.tenant.clone(),
        spec,
        upload_id: Some(up.upload_id),
        s3_key: Some(up.key.clone()),
        source_url: None,
        filename: up.filename.clone(),
        content_type: up.content_type,
        max_attempts: st.cfg.max_attempts,
        temporal: st.dispatcher.as_ref().map(|d| d.route(job_id)),
    })
}

/// Longest `source_url`.
pub const MAX_SOURCE_URL: usize = 2048;

/// A job whose source is a URL the worker fetches (with its own SSRF checks on the resolved
/// addresses; here only the form is checked).
fn prepare_url_job(
    st: &AppState,
    caller: &Caller,
    job_type: &str,
    url: String,
    params: serde_json::Value,
) -> ApiResult<NewJob> {
    let job_type = JobType::parse(job_type).ok_or_else(|| {
        unprocessable(
            ErrorCode::InvalidParameters,
            format!("unknown job_type {job_type:?}; use thumbnail, transform, variants or analyze"),
        )
    })?;
    let spec = JobSpec::parse(job_type, params)
        .map_err(|e| unprocessable(ErrorCode::InvalidParameters, e.to_string()))?;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let authority = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
    if url.len() > MAX_SOURCE_URL
        || !url.chars().all(|c| c.is_ascii_graphic())
        || authority.is_none_or(|a| a.is_empty() || a.contains('@'))
    {
        return Err(unprocessable(
            ErrorCode::InvalidRequest,
            format!(
                "source_url must be an http:// or https:// URL without credentials, at most {MAX_SOURCE_URL} characters"
            ),
        ));
    }
    let job_id = JobId::new();
    Ok(NewJob {
        job_id,
        tenant: caller.tenant.clone(),
        spec,
        upload_id: None,
        s3_key: None,
        source_url: Some(url),
        filename: None,
        content_type: None,
        max_attempts: st.cfg.max_attempts,
        temporal: st.dispatcher.as_ref().map(|d| d.route(job_id)),
    })
}

/// Hands a new Temporal job to its engine (nothing for the SQL queue). A start that fails
/// stays in the outbox, which `serve` retries; returns whether it was started.
pub(crate) async fn dispatch_new(st: &AppState, job: &Job) -> bool {
    let Some(d) = &st.dispatcher else {
        return true;
    };
    match d.dispatch(job).await {
        Ok(()) => {
            if let Err(e) = st.repo.mark_dispatched(job.job_id, Utc::now()).await {
                tracing::warn!(job_id = %job.job_id, error = %e, "recording the workflow start failed; the outbox will confirm it");
            }
            true
        }
        Err(e) => {
            tracing::warn!(job_id = %job.job_id, error = %e, "starting the workflow failed; the outbox will retry it");
            false
        }
    }
}

async fn submit_job(
    st: &AppState,
    caller: &Caller,
    req: SubmitRequest,
) -> ApiResult<(StatusCode, HeaderMap, JobView)> {
    if req.s3_key.is_some() {
        return Err(unprocessable(
            ErrorCode::InvalidRequest,
            "s3_key sources are not accepted yet; pass upload_id or source_url",
        ));
    }
    let new = match req.source_url {
        Some(url) => {
            if req.upload_id.is_some() {
                return Err(unprocessable(
                    ErrorCode::InvalidRequest,
                    "pass one source: upload_id or source_url",
                ));
            }
            prepare_url_job(st, caller, &req.job_type, url, req.params)?
        }
        None => {
            prepare_job(
                st,
                caller,
                &req.job_type,
                req.upload_id.as_deref(),
                req.params,
            )
            .await?
        }
    };
    let job = st.repo.insert_job(&new, Utc::now()).await?;
    // The row is committed first, so the job is never lost: a start that fails stays in the
    // outbox (temporal_dispatched_at_ms IS NULL) and `serve` retries it.
    dispatch_new(st, &job).await;
    tracing::info!(job_id = %job.job_id, tenant = %caller.tenant, job_type = %job.job_type, "job submitted");
    let mut headers = HeaderMap::new();
    if let Ok(loc) = HeaderValue::from_str(&format!("/jobs/{}", job.job_id)) {
        headers.insert(header::LOCATION, loc);
    }
    Ok((StatusCode::ACCEPTED, headers, view(st, &job)))
}

/// A job, with its outputs (signed URLs) and status history.
#[utoipa::path(get, path = "/jobs/{job_id}", tag = "jobs",
    security(("bearer" = [])),
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 404, description = "Unknown job (or another tenant's)", body = Problem)))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Path(job_id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let id: JobId = job_id.parse().map_err(|_| ApiError::not_found("job"))?;
    let job = st
        .repo
        .get_job(&caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("job"))?;
    let mut v = view(&st, &job);
    v.history = Some(
        st.repo
            .job_events(id)
            .await?
            .into_iter()
            .map(|e| HistoryEntry {
                status: e.status,
                attempt: e.attempt,
                message: e.message,
                at: e.at,
            })
            .collect(),
    );
    Ok(Json(v))
}

/// Filters of `GET /jobs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only jobs in this status.
    pub status: Option<String>,
    /// Only jobs of this type.
    pub job_type: Option<String>,
    /// Created at or after (RFC 3339).
    pub created_after: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub created_before: Option<DateTime<Utc>>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1..=200 (default 50).
    pub limit: Option<u32>,
}

/// A page of jobs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobPage {
    /// Newest first.
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Lists the caller's jobs, newest first, with filters and cursor pagination.
#[utoipa::path(get, path = "/jobs", tag = "jobs",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, description = "Bad filter or cursor", body = Problem),
        (status = 401, description = "Missing or invalid API key", body = Problem)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<JobPage>> {
    let status = q
        .status
        .map(|s| {
            JobStatus::parse(&s)
                .ok_or_else(|| ApiError::bad_request(format!("unknown status {s:?}")))
        })
        .transpose()?;
    let job_type = q
        .job_type
        .map(|s| {
            JobType::parse(&s)
                .ok_or_else(|| ApiError::bad_request(format!("unknown job_type {s:?}")))
        })
        .transpose()?;
    let before_id = q
        .cursor
        .map(|c| {
            c.parse::<JobId>()
                .map_err(|_| ApiError::bad_request("invalid cursor"))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let jobs = st
        .repo
        .list_jobs(
            &caller.tenant,
            &JobFilter {
                status,
                job_type,
                created_after: q.created_after,
                created_before: q.created_before,
                batch_id: None,
                before_id,
                limit: limit + 1,
            },
        )
        .await?;
    let more = jobs.len() > limit as usize;
    let page: Vec<_> = jobs
        .iter()
        .take(limit as usize)
        .map(|j| view(&st, j))
        .collect();
    let next_cursor = if more {
        page.last().map(|j| j.job_id.clone())
    } else {
        None
    };
    Ok(Json(JobPage {
        jobs: page,
        next_cursor,
    }))
}

fn parse_job_id(job_id: &str) -> ApiResult<JobId> {
    job_id.parse().map_err(|_| ApiError::not_found("job"))
}

/// Cancels a job that has not finished. A queued job never starts; a running one stops at its
/// next step boundary (read, transform, write) and ends `cancelled`; whatever it wrote is
/// removed. On Temporal the job's workflow is cancelled too. Cancelling a finished job is a
/// `409 job_not_cancellable`.
#[utoipa::path(post, path = "/jobs/{job_id}/cancel", tag = "jobs",
    security(("bearer" = [])),
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Cancelled", body = JobView),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 404, description = "Unknown job (or another tenant's)", body = Problem),
        (status = 409, description = "The job has finished (`job_not_cancellable`)", body = Problem)))]
pub async fn cancel(
    State(st): State<AppState>,
    caller: Caller,
    Path(job_id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let id = parse_job_id(&job_id)?;
    let Some(job) = st.repo.cancel_job(&caller.tenant, id, Utc::now()).await? else {
        let job = st
            .repo
            .get_job(&caller.tenant, id)
            .await?
            .ok_or_else(|| ApiError::not_found("job"))?;
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::JobNotCancellable,
            format!(
                "the job is {}; only unfinished jobs can be cancelled",
                job.status
            ),
        )
        .with("status", job.status.as_str()));
    };
    // Outputs live under deterministic keys: remove any an attempt wrote before it noticed the
    // cancellation (the worker removes what it writes after this, too).
    for key in photo_jobs_keys(&job) {
        if let Err(e) = st.store.delete(Bucket::Processed, &key).await {
            tracing::warn!(job_id = %id, error = %e, "removing a cancelled job's output failed");
        }
    }
    // The row says cancelled, which is what attempts check: should the engine not hear of it,
    // the workflow's next attempt refuses to start and the running one stops at its next step.
    if let Some(d) = &st.dispatcher
        && let Err(e) = d.cancel(&job).await
    {
        tracing::warn!(job_id = %id, error = %e, "cancelling the Temporal workflow failed");
    }
    tracing::info!(job_id = %id, tenant = %caller.tenant, "job cancelled");
    Ok(Json(view(&st, &job)))
}

/// The deterministic output keys of a job (as the worker writes them).
pub(crate) fn photo_jobs_keys(job: &Job) -> Vec<photo_core::ObjectKey> {
    job.spec
        .outputs()
        .into_iter()
        .filter_map(|(name, fmt)| {
            photo_core::ObjectKey::job_output(&job.tenant, job.job_id, name, fmt.extension()).ok()
        })
        .collect()
}

async fn requeue(
    st: &AppState,
    tenant: &photo_core::TenantId,
    id: JobId,
) -> ApiResult<Option<Job>> {
    // A Temporal job runs a new workflow: the old id belongs to a closed workflow.
    let workflow_id = st.dispatcher.as_ref().map(|d| {
        format!(
            "{}-r{}",
            d.route(id).workflow_id,
            Utc::now().timestamp_millis()
        )
    });
    let Some(job) = st
        .repo
        .retry_job(tenant, id, workflow_id.as_deref(), Utc::now())
        .await?
    else {
        return Ok(None);
    };
    if let Some(d) = &st.dispatcher
        && job.temporal.is_some()
    {
        match d.dispatch(&job).await {
            Ok(()) => {
                if let Err(e) = st.repo.mark_dispatched(job.job_id, Utc::now()).await {
                    tracing::warn!(job_id = %job.job_id, error = %e, "recording the workflow start failed; the outbox will confirm it");
                }
            }
            Err(e) => {
                tracing::warn!(job_id = %job.job_id, error = %e, "starting the workflow failed; the outbox will retry it");
            }
        }
    }
    Ok(Some(job))
}

/// Queues a `failed` or `dead` job again: a fresh set of attempts, the same id and outputs
/// key; its history keeps the earlier attempts. Anything else is a `409 job_not_retryable`.
#[utoipa::path(post, path = "/jobs/{job_id}/retry", tag = "jobs",
    security(("bearer" = [])),
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 202, description = "Queued again", body = JobView),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 404, description = "Unknown job (or another tenant's)", body = Problem),
        (status = 409, description = "The job is not failed or dead (`job_not_retryable`)", body = Problem)))]
pub async fn retry(
    State(st): State<AppState>,
    caller: Caller,
    Path(job_id): Path<String>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let id = parse_job_id(&job_id)?;
    let Some(job) = requeue(&st, &caller.tenant, id).await? else {
        let job = st
            .repo
            .get_job(&caller.tenant, id)
            .await?
            .ok_or_else(|| ApiError::not_found("job"))?;
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::JobNotRetryable,
            format!(
                "the job is {}; only failed or dead jobs can be retried",
                job.status
            ),
        )
        .with("status", job.status.as_str()));
    };
    tracing::info!(job_id = %id, tenant = %caller.tenant, "job queued again");
    Ok((StatusCode::ACCEPTED, Json(view(&st, &job))))
}

/// Largest number of jobs one redrive requeues.
pub const MAX_REDRIVE: u32 = 1000;

/// `POST /jobs/redrive` body: which dead jobs to queue again (all of them when empty).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// Only jobs of this type.
    #[serde(default)]
    pub job_type: Option<String>,
    /// Only jobs whose last error has this code (e.g. `storage_error`, `worker_lost`).
    #[serde(default)]
    pub error_code: Option<String>,
    /// Only jobs created at or after (RFC 3339).
    #[serde(default)]
    pub created_after: Option<DateTime<Utc>>,
    /// Only jobs created before (RFC 3339).
    #[serde(default)]
    pub created_before: Option<DateTime<Utc>>,
    /// At most this many, 1..=1000 (default 1000); call again for more.
    #[serde(default)]
    pub limit: Option<u32>,
}

/// What a redrive did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedriveResult {
    /// How many dead jobs were queued again.
    pub redriven: usize,
    /// Their ids.
    pub job_ids: Vec<String>,
    /// True when `limit` stopped the redrive before every matching job was queued.
    pub more: bool,
}

/// Queues the caller's dead jobs again (the dead-letter list is `GET /jobs?status=dead`): all
/// of them (body `{}`), or those matching the filter, up to `limit` per call.
#[utoipa::path(post, path = "/jobs/redrive", tag = "jobs", request_body = RedriveRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Queued again", body = RedriveResult),
        (status = 400, description = "Malformed body", body = Problem),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 422, description = "Bad filter (`invalid_parameters`)", body = Problem)))]
pub async fn redrive(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<RedriveRequest>,
) -> ApiResult<Json<RedriveResult>> {
    let job_type = req
        .job_type
        .map(|s| {
            JobType::parse(&s).ok_or_else(|| {
                unprocessable(
                    ErrorCode::InvalidParameters,
                    format!("unknown job_type {s:?}"),
                )
            })
        })
        .transpose()?;
    if req
        .error_code
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > 64)
    {
        return Err(unprocessable(
            ErrorCode::InvalidParameters,
            "error_code must be 1..=64 characters",
        ));
    }
    let limit = req.limit.unwrap_or(MAX_REDRIVE);
    if !(1..=MAX_REDRIVE).contains(&limit) {
        return Err(unprocessable(
            ErrorCode::InvalidParameters,
            format!("limit must be between 1 and {MAX_REDRIVE}"),
        ));
    }
    let mut ids = Vec::new();
    let mut before_id = None;
    let mut more = false;
    'pages: loop {
        let page = st
            .repo
            .list_jobs(
                &caller.tenant,
                &JobFilter {
                    status: Some(JobStatus::Dead),
                    job_type,
                    created_after: req.created_after,
                    created_before: req.created_before,
                    batch_id: None,
                    before_id,
                    limit: MAX_PAGE,
                },
            )
            .await?;
        let Some(last) = page.last() else { break };
        before_id = Some(last.job_id);
        let full = page.len() == MAX_PAGE as usize;
        for job in page {
            if req
                .error_code
                .as_ref()
                .is_some_and(|c| job.error_code.as_ref() != Some(c))
            {
                continue;
            }
            if ids.len() == limit as usize {
                more = true;
                break 'pages;
            }
            // A job that stopped being dead meanwhile (retried by someone else) is skipped.
            if requeue(&st, &caller.tenant, job.job_id).await?.is_some() {
                ids.push(job.job_id.to_string());
            }
        }
        if !full {
            break;
        }
    }
    tracing::info!(tenant = %caller.tenant, redriven = ids.len(), "dead jobs redriven");
    Ok(Json(RedriveResult {
        redriven: ids.len(),
        job_ids: ids,
        more,
    }))
}
