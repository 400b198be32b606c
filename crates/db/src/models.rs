//! Rows as domain values.

use chrono::{DateTime, Utc};
use photo_core::{
    BatchId, ContentType, JobId, JobSpec, JobStatus, JobType, ObjectKey, TenantId, UploadId,
};
use serde::{Deserialize, Serialize};

/// A stored API key (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public id, the prefix of the key string.
    pub key_id: String,
    /// The tenant the key acts for.
    pub tenant: TenantId,
    /// Human label.
    pub name: String,
    /// Hex SHA-256 of the whole key string.
    pub secret_sha256: String,
    /// Granted scopes (`read`, `write`, `admin`).
    pub scopes: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Optional expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Set when revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last successful use.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// An admin action to record in the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who: a key id, `bootstrap`, `jwt:<subject>` or `cli`.
    pub actor: String,
    /// The actor's own tenant (none for the CLI).
    pub actor_tenant: Option<TenantId>,
    /// What: `key.created`, `key.revoked`.
    pub action: String,
    /// What it was done to (a key id).
    pub target: Option<String>,
    /// Extra facts (name, scopes, expiry); never a secret.
    pub detail: serde_json::Value,
}

/// A recorded admin action.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Position in the log, increasing.
    pub seq: i64,
    /// The tenant acted upon.
    pub tenant: TenantId,
    /// The action.
    pub entry: NewAuditEntry,
}

/// Where an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadStatus {
    /// Initialised; no object yet.
    Pending,
    /// Object received; not yet checked.
    Uploaded,
    /// Checked: a valid image within limits.
    Ready,
    /// Checked and refused; see the reason.
    Rejected,
    /// Swept: the raw object is gone.
    Expired,
}

impl UploadStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Uploaded => "uploaded",
            Self::Ready => "ready",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }

    /// Parses [`UploadStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Uploaded,
            Self::Ready,
            Self::Rejected,
            Self::Expired,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// A new upload at init.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// Id.
    pub upload_id: UploadId,
    /// Owner.
    pub tenant: TenantId,
    /// Where the raw object goes.
    pub key: ObjectKey,
    /// What the client said it will send.
    pub declared: ContentType,
    /// Signed size limit.
    pub max_bytes: u64,
    /// Client's file name, for display only.
    pub filename: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When the upload URL stops working.
    pub url_expires_at: DateTime<Utc>,
    /// When the upload and its raw object are swept.
    pub expires_at: DateTime<Utc>,
    /// Made through `POST /files/presigned-upload`: the tenant file it becomes when ready.
    pub file_path: Option<photo_core::FilePath>,
    /// Whether that file may replace an existing one.
    pub file_overwrite: bool,
    /// Jobs queued when the upload completes ready (a preset, or the init request's list).
    pub eager_jobs: Vec<JobSpec>,
}

/// An upload row.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Id.
    pub upload_id: UploadId,
    /// Owner.
    pub tenant: TenantId,
    /// Raw object key.
    pub key: ObjectKey,
    /// Declared type.
    pub declared: ContentType,
    /// Signed size limit.
    pub max_bytes: u64,
    /// Client's file name.
    pub filename: Option<String>,
    /// State.
    pub status: UploadStatus,
    /// Sniffed type, once checked.
    pub content_type: Option<ContentType>,
    /// Stored size.
    pub size: Option<u64>,
    /// Width from the header.
    pub width: Option<u32>,
    /// Height from the header.
    pub height: Option<u32>,
    /// Stable rejection code.
    pub reject_code: Option<String>,
    /// Human rejection reason.
    pub reason: Option<String>,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// URL expiry.
    pub url_expires_at: DateTime<Utc>,
    /// Sweep time.
    pub expires_at: DateTime<Utc>,
    /// When the object arrived.
    pub uploaded_at: Option<DateTime<Utc>>,
    /// When it was checked.
    pub completed_at: Option<DateTime<Utc>>,
    /// The tenant file this upload becomes when ready (`POST /files/presigned-upload`).
    pub file_path: Option<photo_core::FilePath>,
    /// Whether that file may replace an existing one.
    pub file_overwrite: bool,
    /// Jobs its completion queues (see [`NewUpload::eager_jobs`]).
    pub eager_jobs: Vec<JobSpec>,
    /// The jobs its completion queued, in the order of `eager_jobs`.
    pub eager_job_ids: Vec<JobId>,
}

/// What the completion check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// A valid image.
    Ready {
        /// Sniffed type.
        content_type: ContentType,
        /// Stored size.
        size: u64,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Where the object now lives when it was promoted out of the quarantine (the row's
        /// key becomes this); `None` keeps the key.
        promoted_key: Option<ObjectKey>,
    },
    /// Refused.
    Rejected {
        /// Stable code.
        code: String,
        /// Human reason.
        reason: String,
    },
}

/// One output file of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutput {
    /// Output name within the job (`thumbnail`, `transform`, …).
    pub name: String,
    /// Key in the processed bucket.
    pub key: ObjectKey,
    /// MIME type.
    pub content_type: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Size in bytes.
    pub size: u64,
}

/// Which engine runs a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEngine {
    /// Our own queue in `job_logs`, claimed by `photo-api worker`.
    #[default]
    Sql,
    /// A Temporal workflow; SQL workers never claim it.
    Temporal,
}

impl JobEngine {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sql => "sql",
            Self::Temporal => "temporal",
        }
    }

    /// Parses [`JobEngine::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Sql, Self::Temporal]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// Where a Temporal job runs: the workflow id and the task queue, recorded in `job_logs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporalRoute {
    /// The workflow id (`photo-job-{job_id}`).
    pub workflow_id: String,
    /// The task queue its workflow and activities run on.
    pub task_queue: String,
}

/// A job to queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Id.
    pub job_id: JobId,
    /// Owner.
    pub tenant: TenantId,
    /// What to do.
    pub spec: JobSpec,
    /// Source upload.
    pub upload_id: Option<UploadId>,
    /// Source key in the raw bucket.
    pub s3_key: Option<ObjectKey>,
    /// Source URL, fetched by the worker (instead of a raw object).
    pub source_url: Option<String>,
    /// Source file name, for display.
    pub filename: Option<String>,
    /// Source content type.
    pub content_type: Option<ContentType>,
    /// Attempts before the job is dead.
    pub max_attempts: u32,
    /// `None`: the SQL queue. `Some`: a Temporal workflow (engine `temporal`).
    pub temporal: Option<TemporalRoute>,
}

/// A job row.
#[derive(Debug, Clone)]
pub struct Job {
    /// Id.
    pub job_id: JobId,
    /// Owner.
    pub tenant: TenantId,
    /// Kind.
    pub job_type: JobType,
    /// Parameters.
    pub spec: JobSpec,
    /// Source upload.
    pub upload_id: Option<UploadId>,
    /// Source key.
    pub s3_key: Option<ObjectKey>,
    /// Source URL.
    pub source_url: Option<String>,
    /// Source file name.
    pub filename: Option<String>,
    /// Source type.
    pub content_type: Option<ContentType>,
    /// State.
    pub status: JobStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Stable code of the last error.
    pub error_code: Option<String>,
    /// Last error.
    pub error_message: Option<String>,
    /// Outputs, once completed.
    pub outputs: Vec<JobOutput>,
    /// What the job found (the `analyze` report), once completed.
    pub result: Option<serde_json::Value>,
    /// Queued at.
    pub created_at: DateTime<Utc>,
    /// First started.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished (completed, failed, dead).
    pub completed_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Earliest next run.
    pub run_at: DateTime<Utc>,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// The W3C `traceparent` of the request that submitted it, when tracing was on.
    pub trace_context: Option<String>,
    /// The engine that runs it.
    pub engine: JobEngine,
    /// Workflow id and task queue, for Temporal jobs.
    pub temporal: Option<TemporalRoute>,
    /// The batch it was submitted in.
    pub batch_id: Option<BatchId>,
}

/// Filters of `GET /jobs`.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this status.
    pub status: Option<JobStatus>,
    /// Only this type.
    pub job_type: Option<JobType>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
    /// Only jobs of this batch.
    pub batch_id: Option<BatchId>,
    /// Exclusive cursor: only jobs older than this id.
    pub before_id: Option<JobId>,
    /// Page size.
    pub limit: u32,
}

/// The fencing token of a claim: only its holder may heartbeat, complete or fail the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken {
    /// The job.
    pub job_id: JobId,
    /// Random per claim.
    pub token: String,
}

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The job as claimed (attempts already incremented).
    pub job: Job,
    /// Fencing token.
    pub token: ClaimToken,
}

/// How an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Stable code.
    pub code: String,
    /// Message.
    pub message: String,
    /// `None`: permanent (bad input), the job fails now. `Some(t)`: retry at `t` if attempts
    /// remain, else the job is dead.
    pub retry_at: Option<DateTime<Utc>>,
}

/// One entry of a job's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobEvent {
    /// Order.
    pub seq: i64,
    /// Status entered.
    pub status: String,
    /// Attempt number at that point.
    pub attempt: u32,
    /// Error message for failures.
    pub message: Option<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// A stored `Idempotency-Key`: the request it belongs to and, once that request finished, its
/// response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// SHA-256 (hex) of the request it was first used with.
    pub request_sha256: String,
    /// The response's status; `None` while the first request is still running.
    pub status_code: Option<u16>,
    /// The response to replay (JSON), once finished.
    pub response_body: Option<String>,
}

/// Which key of which tenant and route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyScope<'a> {
    /// The tenant (keys never cross tenants).
    pub tenant: &'a TenantId,
    /// The route, e.g. `POST /jobs`.
    pub scope: &'a str,
    /// The client's key.
    pub key: &'a str,
}

/// A batch of jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Id.
    pub batch_id: BatchId,
    /// Owner.
    pub tenant: TenantId,
    /// Jobs in it.
    pub total: u64,
    /// Submitted at.
    pub created_at: DateTime<Utc>,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// When its last job reached a terminal status (the `batch.completed` / `batch.failed`
    /// event); set once.
    pub finished_at: Option<DateTime<Utc>>,
    /// `completed`, or `failed` when any job ended failed or dead; with `finished_at`.
    pub finished_status: Option<String>,
}

/// One entry of an event stream: a job's status change, as `job_events` recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamEvent {
    /// Position in the tenant's stream (the SSE event id).
    pub seq: i64,
    /// The job.
    pub job_id: String,
    /// Status entered.
    pub status: String,
    /// Attempt number at that point.
    pub attempt: u32,
    /// Error message for failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// A tenant's webhook: where to POST which events, and the secret they are signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Id.
    pub webhook_id: String,
    /// Owner.
    pub tenant: TenantId,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Event types it receives (`job.completed`, `job.failed`, `job.dead`, `job.cancelled`,
    /// `batch.completed`, `batch.failed`).
    pub event_types: Vec<String>,
    /// HMAC-SHA256 key of its signatures.
    pub secret: String,
    /// Created at.
    pub created_at: DateTime<Utc>,
}

/// One event to one webhook, and how sending it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Id (also the `Photo-Api-Webhook-Id` header).
    pub delivery_id: String,
    /// The webhook.
    pub webhook_id: String,
    /// The event's seq in `job_events`.
    pub event_seq: i64,
    /// Event type.
    pub event_type: String,
    /// The JSON body sent.
    pub payload: String,
    /// `pending`, `delivered` or `failed` (gave up).
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// Next attempt (while pending).
    pub next_attempt_at: DateTime<Utc>,
    /// HTTP status of the last attempt, if it got one.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A delivery due now, with where to send it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The delivery.
    pub delivery: WebhookDelivery,
    /// The webhook's URL.
    pub url: String,
    /// The webhook's secret.
    pub secret: String,
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A 2xx answer.
    Delivered {
        /// Its status.
        status_code: u16,
    },
    /// No 2xx answer; try again at `retry_at`, or give up (`None`).
    Failed {
        /// The answer's status, if there was one.
        status_code: Option<u16>,
        /// What went wrong.
        error: String,
        /// Next attempt; `None`: the last one was made.
        retry_at: Option<DateTime<Utc>>,
    },
}

/// Jobs of one type in one status, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStat {
    /// Job type as stored.
    pub job_type: String,
    /// Status.
    pub status: JobStatus,
    /// How many.
    pub count: u64,
    /// For waiting jobs (`submitted`, `retrying`): the earliest time one may run, in Unix
    /// milliseconds (how long the oldest due job has been waiting is `now` minus this).
    pub oldest_run_at_ms: Option<i64>,
}
