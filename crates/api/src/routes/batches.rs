//! Batches: many jobs submitted at once, watched and cancelled together.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use photo_core::{BatchId, ErrorCode, JobStatus};
use photo_db::{Batch, JobFilter};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::jobs::{
    JobPage, JobView, MAX_PAGE, dispatch_new, photo_jobs_keys, prepare_job, unprocessable, view,
};
use crate::state::AppState;

/// Body limit of `POST /batches` (larger than other JSON routes: up to the batch limit of items).
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// One item of a batch.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    /// The source: a ready upload of the caller's.
    pub upload_id: String,
    /// This item's job type (default: the batch's).
    #[serde(default)]
    pub job_type: Option<String>,
    /// This item's parameters (default: the batch's).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
}

/// `POST /batches` body: items, and the job spec they share (each item may bring its own).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The job type of items that name none.
    #[serde(default)]
    pub job_type: Option<String>,
    /// The parameters of items that bring none.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
    /// 1..=`PHOTO_API_MAX_BATCH_SIZE` items, one job each.
    pub items: Vec<BatchItem>,
}

/// A batch and where its jobs are.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchView {
    /// Id.
    pub batch_id: String,
    /// Submitted at.
    pub created_at: DateTime<Utc>,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Jobs in the batch.
    pub total: u64,
    /// Jobs per status (every status present, zeros included); they add up to `total`.
    #[schema(value_type = Object)]
    pub counts: BTreeMap<String, u64>,
    /// Jobs that finished (completed, failed, dead or cancelled).
    pub finished: u64,
    /// `finished / total`, 0.0..=1.0.
    pub progress: f64,
    /// True once every job finished.
    pub done: bool,
    /// When its last job first reached a terminal status (the moment its `batch.completed` or
    /// `batch.failed` event was recorded); set once, a later retry does not reopen it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The batch event fired then: `completed`, or `failed` when any job was failed or dead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

fn batch_view(b: &Batch, counts: &[(JobStatus, u64)]) -> BatchView {
    let mut map: BTreeMap<String, u64> = JobStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    let mut finished = 0;
    for (s, n) in counts {
        *map.entry(s.as_str().to_owned()).or_default() += n;
        if s.is_terminal() {
            finished += n;
        }
    }
    BatchView {
        batch_id: b.batch_id.to_string(),
        created_at: b.created_at,
        cancelled_at: b.cancelled_at,
        total: b.total,
        counts: map,
        finished,
        progress: if b.total == 0 {
            1.0
        } else {
            finished as f64 / b.total as f64
        },
        done: finished == b.total,
        finished_at: b.finished_at,
        outcome: b.finished_status.clone(),
    }
}

/// What `POST /batches` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchCreated {
    /// The batch.
    #[serde(flatten)]
    pub batch: BatchView,
    /// Its job ids, in item order.
    pub job_ids: Vec<String>,
}

/// Submits many jobs at once: one per item, all or none (every item is checked first). Jobs
/// run like any other; watch them with `GET /batches/{batch_id}`. Takes an `Idempotency-Key`.
#[utoipa::path(post, path = "/batches", tag = "batches", request_body = BatchRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1..=255 printable ASCII characters; the same key and body return the same batch")),
    responses(
        (status = 202, description = "Queued", body = BatchCreated),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 404, description = "An item's upload is unknown (or another tenant's)", body = Problem),
        (status = 409, description = "An item's upload is not ready (`upload_not_ready`)", body = Problem),
        (status = 413, description = "The body is too large (`payload_too_large`)", body = Problem),
        (status = 422, description = "No items, too many (`batch_too_large`), bad job type or params (`invalid_parameters`), `idempotency_key_reused`", body = Problem)))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Response> {
    let req: BatchRequest = crate::extract::from_json_value(body.clone())?;
    crate::idempotency::idempotent(
        &st,
        &caller,
        "POST /batches",
        &headers,
        &body,
        create_batch(&st, &caller, req),
    )
    .await
}

async fn create_batch(
    st: &AppState,
    caller: &Caller,
    req: BatchRequest,
) -> ApiResult<(StatusCode, HeaderMap, BatchCreated)> {
    let max = st.cfg.max_batch_size;
    if req.items.is_empty() {
        return Err(unprocessable(
            ErrorCode::InvalidRequest,
            "items must hold at least one item",
        ));
    }
    if req.items.len() > max {
        return Err(unprocessable(
            ErrorCode::BatchTooLarge,
            format!(
                "a batch holds at most {max} items; this one has {}",
                req.items.len()
            ),
        )
        .with("max_batch_size", max));
    }
    let mut jobs = Vec::with_capacity(req.items.len());
    for (i, item) in req.items.into_iter().enumerate() {
        let job_type = item
            .job_type
            .as_deref()
            .or(req.job_type.as_deref())
            .ok_or_else(|| {
                unprocessable(
                    ErrorCode::InvalidRequest,
                    format!("items[{i}] has no job_type and the batch names none"),
                )
            })?;
        let params = item
            .params
            .or_else(|| req.params.clone())
            .unwrap_or(serde_json::Value::Null);
        let job = prepare_job(st, caller, job_type, Some(&item.upload_id), params)
            .await
            .map_err(|e| {
                let detail = format!("items[{i}]: {}", e.detail);
                ApiError { detail, ..e }.with("item", i)
            })?;
        jobs.push(job);
    }
    let order: Vec<String> = jobs.iter().map(|j| j.job_id.to_string()).collect();
    let batch_id = BatchId::new();
    let inserted = st
        .repo
        .insert_batch(&caller.tenant, batch_id, &jobs, Utc::now())
        .await?;
    // Rows first, then the engine: a start that fails leaves the rest to the outbox.
    for job in &inserted {
        if !dispatch_new(st, job).await {
            break;
        }
    }
    let (batch, counts) = st
        .repo
        .get_batch(&caller.tenant, batch_id)
        .await?
        .ok_or_else(|| ApiError::not_found("batch"))?;
    tracing::info!(%batch_id, tenant = %caller.tenant, jobs = inserted.len(), "batch submitted");
    let mut headers = HeaderMap::new();
    if let Ok(loc) = HeaderValue::from_str(&format!("/batches/{batch_id}")) {
        headers.insert(header::LOCATION, loc);
    }
    Ok((
        StatusCode::ACCEPTED,
        headers,
        BatchCreated {
            batch: batch_view(&batch, &counts),
            job_ids: order,
        },
    ))
}

fn parse_batch_id(id: &str) -> ApiResult<BatchId> {
    id.parse().map_err(|_| ApiError::not_found("batch"))
}

/// A batch: its jobs' counts per status (always adding up to `total`) and progress.
#[utoipa::path(get, path = "/batches/{batch_id}", tag = "batches",
    security(("bearer" = [])),
    params(("batch_id" = String, Path, description = "Batch id")),
    responses(
        (status = 200, description = "The batch", body = BatchView),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 404, description = "Unknown batch (or another tenant's)", body = Problem)))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Path(batch_id): Path<String>,
) -> ApiResult<Json<BatchView>> {
    let id = parse_batch_id(&batch_id)?;
    let (batch, counts) = st
        .repo
        .get_batch(&caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("batch"))?;
    Ok(Json(batch_view(&batch, &counts)))
}

/// Paging of `GET /batches/{batch_id}/jobs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BatchJobsQuery {
    /// Only jobs in this status.
    pub status: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1..=200 (default 50).
    pub limit: Option<u32>,
}

/// The batch's jobs, newest first, with cursor pagination (as `GET /jobs`).
#[utoipa::path(get, path = "/batches/{batch_id}/jobs", tag = "batches",
    security(("bearer" = [])),
    params(("batch_id" = String, Path, description = "Batch id"), BatchJobsQuery),
    responses(
        (status = 200, description = "A page of the batch's jobs", body = JobPage),
        (status = 400, description = "Bad status, cursor or limit", body = Problem),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 404, description = "Unknown batch (or another tenant's)", body = Problem)))]
pub async fn jobs(
    State(st): State<AppState>,
    caller: Caller,
    Path(batch_id): Path<String>,
    ApiQuery(q): ApiQuery<BatchJobsQuery>,
) -> ApiResult<Json<JobPage>> {
    let id = parse_batch_id(&batch_id)?;
    if st.repo.get_batch(&caller.tenant, id).await?.is_none() {
        return Err(ApiError::not_found("batch"));
    }
    let status = q
        .status
        .map(|s| {
            JobStatus::parse(&s)
                .ok_or_else(|| ApiError::bad_request(format!("unknown status {s:?}")))
        })
        .transpose()?;
    let before_id = q
        .cursor
        .map(|c| {
            c.parse()
                .map_err(|_| ApiError::bad_request("invalid cursor"))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let found = st
        .repo
        .list_jobs(
            &caller.tenant,
            &JobFilter {
                status,
                batch_id: Some(id),
                before_id,
                limit: limit + 1,
                ..JobFilter::default()
            },
        )
        .await?;
    let more = found.len() > limit as usize;
    let page: Vec<JobView> = found
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

/// What `POST /batches/{batch_id}/cancel` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchCancelled {
    /// The batch after the cancel.
    #[serde(flatten)]
    pub batch: BatchView,
    /// How many jobs this call cancelled (finished ones are left as they are).
    pub cancelled: usize,
}

/// Cancels every unfinished job of the batch, as `POST /jobs/{job_id}/cancel` does one
/// (queued ones never start, running ones stop at their next step, outputs are removed);
/// finished jobs keep their results. Cancelling again is harmless.
#[utoipa::path(post, path = "/batches/{batch_id}/cancel", tag = "batches",
    security(("bearer" = [])),
    params(("batch_id" = String, Path, description = "Batch id")),
    responses(
        (status = 200, description = "Cancelled", body = BatchCancelled),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 404, description = "Unknown batch (or another tenant's)", body = Problem)))]
pub async fn cancel(
    State(st): State<AppState>,
    caller: Caller,
    Path(batch_id): Path<String>,
) -> ApiResult<Json<BatchCancelled>> {
    let id = parse_batch_id(&batch_id)?;
    let cancelled = st
        .repo
        .cancel_batch(&caller.tenant, id, Utc::now())
        .await?
        .ok_or_else(|| ApiError::not_found("batch"))?;
    for job in &cancelled {
        for key in photo_jobs_keys(job) {
            if let Err(e) = st
                .store
                .delete(photo_storage::Bucket::Processed, &key)
                .await
            {
                tracing::warn!(job_id = %job.job_id, error = %e, "removing a cancelled job's output failed");
            }
        }
        if let Some(d) = &st.dispatcher
            && let Err(e) = d.cancel(job).await
        {
            tracing::warn!(job_id = %job.job_id, error = %e, "cancelling the Temporal workflow failed");
        }
    }
    let (batch, counts) = st
        .repo
        .get_batch(&caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("batch"))?;
    tracing::info!(batch_id = %id, tenant = %caller.tenant, cancelled = cancelled.len(), "batch cancelled");
    Ok(Json(BatchCancelled {
        batch: batch_view(&batch, &counts),
        cancelled: cancelled.len(),
    }))
}
