//! Repositories of photo-api over SQL databases: API keys, uploads and the durable job queue.
//! The [`Repo`] trait is what the rest of the service sees; [`SqliteRepo`] is the embedded
//! default, [`PgRepo`] the scaled-out one. [`open`] picks one by the URL's scheme.

mod files;
mod migrate;
mod models;
mod open;
mod postgres;
mod rows;
mod sqlite;
mod tenants;

use chrono::{DateTime, Utc};
use photo_core::{BatchId, JobId, JobStatus, TenantId, UploadId};

pub use files::{
    DeleteProgress, FileConflict, FileError, FileRecord, FileRepo, FileResult, NewFile, Transfer,
};
pub use models::*;
pub use open::{Database, connect, is_postgres_url, open};
pub use postgres::{PgOptions, PgRepo};
pub use sqlite::SqliteRepo;
pub use tenants::{Tenant, TenantChange, TenantRepo, TenantStatus, now_ms};

/// Database failures. Constraint violations the caller can act on get their own variants.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// The database URL is not one this build understands.
    #[error("invalid database URL: {0}")]
    BadUrl(String),
    /// A stored value could not be read back (a bug or a hand-edited row).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A migration failed.
    #[error("migration {version} failed: {source}")]
    Migration {
        /// The migration's version.
        version: i64,
        /// Why.
        source: sqlx::Error,
    },
}

impl DbError {
    /// The database could not be reached, is shutting down or restarting, or is too busy to
    /// answer in time (as opposed to refusing a statement): callers answer 503 and retry.
    /// Statement timeouts count too — see [`DbError::is_timeout`].
    pub fn is_unavailable(&self) -> bool {
        let Self::Sqlx(e) = self else { return false };
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(d) => d.code().is_some_and(|c| unavailable_sqlstate(&c)),
            _ => false,
        }
    }

    /// A statement ran past the database's `statement_timeout` (SQLSTATE 57014) or the pool
    /// had no connection within its acquire timeout.
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::Sqlx(sqlx::Error::PoolTimedOut) => true,
            Self::Sqlx(sqlx::Error::Database(d)) => d.code().is_some_and(|c| c == "57014"),
            _ => false,
        }
    }
}

/// SQLSTATEs meaning "the server is not there for you right now": connection exceptions
/// (class 08), admin/crash shutdown and cannot-connect-now (57P01..57P03), too many connections
/// (53300), and query_canceled (57014: our statement timeout, a busy database).
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "57014")
}

/// The engine a new job is recorded with: Temporal when it has a workflow route.
pub(crate) fn engine_of(j: &NewJob) -> JobEngine {
    if j.temporal.is_some() {
        JobEngine::Temporal
    } else {
        JobEngine::Sql
    }
}

/// The `traceparent` of the span a job is submitted in (none when tracing is off), stored with
/// the job so its worker's spans join the submitting request's trace. Read here rather than
/// passed in, so every way of submitting a job (a request, a batch, a preset) carries it.
pub(crate) fn submitting_trace() -> Option<String> {
    photo_core::telemetry::traceparent(&tracing::Span::current())
}

/// Result alias.
pub type DbResult<T> = Result<T, DbError>;

/// Everything the service stores in its database.
#[async_trait::async_trait]
pub trait Repo: FileRepo + TenantRepo + Send + Sync + std::fmt::Debug {
    /// Checks the database answers.
    async fn health(&self) -> DbResult<()>;

    // --- API keys
    /// Stores a new key.
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> DbResult<()>;
    /// Finds a key by its public id.
    async fn find_api_key(&self, key_id: &str) -> DbResult<Option<ApiKeyRecord>>;
    /// Records that a key was used.
    async fn touch_api_key(&self, key_id: &str, at: DateTime<Utc>) -> DbResult<()>;
    /// How many keys exist (revoked ones included).
    async fn count_api_keys(&self) -> DbResult<u64>;
    /// Stores a new key and its audit entry (for the key's tenant) in one transaction; a tenant
    /// without a row gets one (active), with its own `tenant.created` entry by the same actor.
    async fn create_api_key(&self, key: &ApiKeyRecord, audit: &NewAuditEntry) -> DbResult<()>;
    /// Keys of `tenant` (every tenant's when `None`), oldest first; revoked ones included.
    async fn list_api_keys(&self, tenant: Option<&TenantId>) -> DbResult<Vec<ApiKeyRecord>>;
    /// Revokes a key of `tenant` (any tenant's when `None`). `None` when there is no such key
    /// there; otherwise the key as it is now. The audit entry is written, in the same
    /// transaction, only when this call revoked it (revoking twice records one entry).
    async fn revoke_api_key(
        &self,
        tenant: Option<&TenantId>,
        key_id: &str,
        audit: &NewAuditEntry,
    ) -> DbResult<Option<ApiKeyRecord>>;
    /// Audit entries of `tenant` (every tenant's when `None`), newest first, with `seq` below
    /// `before` when given.
    async fn list_audit(
        &self,
        tenant: Option<&TenantId>,
        before: Option<i64>,
        limit: u32,
    ) -> DbResult<Vec<AuditEntry>>;

    // --- uploads
    /// Stores a new pending upload.
    async fn insert_upload(&self, upload: &NewUpload) -> DbResult<()>;
    /// An upload of `tenant`, or any tenant's when `tenant` is `None` (signed-URL routes).
    async fn get_upload(&self, tenant: Option<&TenantId>, id: UploadId)
    -> DbResult<Option<Upload>>;
    /// Marks the object as received; only from `pending` or `uploaded` (a re-upload before
    /// completion replaces the object). Returns false otherwise.
    async fn mark_uploaded(&self, id: UploadId, size: u64, at: DateTime<Utc>) -> DbResult<bool>;
    /// Records the completion check's outcome; only from `uploaded`. Returns the new row, or
    /// `None` when the upload was not in `uploaded`.
    async fn complete_upload(
        &self,
        id: UploadId,
        outcome: &UploadOutcome,
        at: DateTime<Utc>,
    ) -> DbResult<Option<Upload>> {
        self.complete_upload_with_jobs(id, outcome, &[], at).await
    }
    /// [`Repo::complete_upload`], and when the upload becomes ready, queues `jobs` (its eager
    /// jobs) and records their ids in [`Upload::eager_job_ids`], in the same transaction: only
    /// the call that moves the upload out of `uploaded` queues anything, so completing an upload
    /// any number of times, concurrently or not, queues its jobs once.
    async fn complete_upload_with_jobs(
        &self,
        id: UploadId,
        outcome: &UploadOutcome,
        jobs: &[NewJob],
        at: DateTime<Utc>,
    ) -> DbResult<Option<Upload>>;
    /// Uploads whose raw object has expired and that are not yet marked so.
    async fn expired_uploads(&self, now: DateTime<Utc>, limit: u32) -> DbResult<Vec<Upload>>;
    /// Marks an upload expired (its object is gone).
    async fn mark_upload_expired(&self, id: UploadId) -> DbResult<()>;

    // --- jobs
    /// Queues a new job.
    async fn insert_job(&self, job: &NewJob, now: DateTime<Utc>) -> DbResult<Job>;
    /// A job of `tenant`.
    async fn get_job(&self, tenant: &TenantId, id: JobId) -> DbResult<Option<Job>>;
    /// A job by id alone, for workers.
    async fn get_job_any_tenant(&self, id: JobId) -> DbResult<Option<Job>>;
    /// Jobs of `tenant`, newest first, after the cursor.
    async fn list_jobs(&self, tenant: &TenantId, filter: &JobFilter) -> DbResult<Vec<Job>>;
    /// Status history of a job, oldest first.
    async fn job_events(&self, id: JobId) -> DbResult<Vec<JobEvent>>;
    /// Events of `tenant` (of one job when `job` is given) with `seq > after`, in seq order, at
    /// most `limit`: the event streams' source. Events become visible in seq order (SQLite's
    /// single writer; an ordering lock in PostgreSQL's trigger), so a reader that resumes after
    /// the last seq it saw misses none.
    async fn events_after(
        &self,
        tenant: &TenantId,
        job: Option<JobId>,
        after: i64,
        limit: u32,
    ) -> DbResult<Vec<StreamEvent>>;
    /// Cancels a job of `tenant` that has not finished (`submitted`, `retrying` or `started`):
    /// it becomes `cancelled` and its claim token is revoked, so a running attempt can neither
    /// heartbeat nor record a result and stops at its next step boundary. `None` (no change)
    /// when the job is absent, another tenant's, or already finished.
    async fn cancel_job(
        &self,
        tenant: &TenantId,
        id: JobId,
        now: DateTime<Utc>,
    ) -> DbResult<Option<Job>>;
    /// Queues a `failed` or `dead` job of `tenant` again as a fresh submission: attempts from
    /// zero, error and outputs cleared, due now (its history keeps the earlier attempts). A
    /// Temporal job gets `workflow_id` as its new workflow (a finished workflow id cannot be
    /// reused) and goes back to the outbox. `None` (no change) when the job is absent, another
    /// tenant's, or not failed/dead.
    async fn retry_job(
        &self,
        tenant: &TenantId,
        id: JobId,
        workflow_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> DbResult<Option<Job>>;

    // --- retention
    /// Finished jobs (completed, failed, dead, cancelled) that finished before `before`,
    /// oldest first, at most `limit`: the ones past their TTL.
    async fn expired_jobs(&self, before: DateTime<Utc>, limit: u32) -> DbResult<Vec<Job>>;
    /// Deletes a job's row and its history.
    async fn delete_job(&self, id: JobId) -> DbResult<()>;

    // --- batches
    /// Stores a batch and all its jobs in one transaction (all or none), each job with
    /// `batch_id`; returns the jobs, in id order.
    async fn insert_batch(
        &self,
        tenant: &TenantId,
        batch_id: BatchId,
        jobs: &[NewJob],
        now: DateTime<Utc>,
    ) -> DbResult<Vec<Job>>;
    /// A batch of `tenant` and its jobs' counts per status, counted in one statement (so they
    /// add up to the batch's total).
    async fn get_batch(
        &self,
        tenant: &TenantId,
        batch_id: BatchId,
    ) -> DbResult<Option<(Batch, Vec<(JobStatus, u64)>)>>;
    /// Cancels every unfinished job of a batch of `tenant` (as [`Repo::cancel_job`] does one)
    /// and marks the batch cancelled; returns the jobs cancelled now, or `None` when there is
    /// no such batch.
    async fn cancel_batch(
        &self,
        tenant: &TenantId,
        batch_id: BatchId,
        now: DateTime<Utc>,
    ) -> DbResult<Option<Vec<Job>>>;

    // --- webhooks
    /// Stores a webhook.
    async fn insert_webhook(&self, hook: &Webhook) -> DbResult<()>;
    /// The tenant's webhooks, oldest first.
    async fn list_webhooks(&self, tenant: &TenantId) -> DbResult<Vec<Webhook>>;
    /// Deletes a webhook of `tenant` (and its deliveries); false when there is none.
    async fn delete_webhook(&self, tenant: &TenantId, id: &str) -> DbResult<bool>;
    /// Deliveries of a webhook of `tenant`, newest first, at most `limit`; `None` when the
    /// webhook is not the tenant's.
    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        limit: u32,
    ) -> DbResult<Option<Vec<WebhookDelivery>>>;
    /// Reads up to `limit` events after the fan-out's cursor and creates a delivery for each
    /// finished-job event (`job.completed`, `job.failed`, `job.dead`, `job.cancelled`), each
    /// finished-batch event (`batch.completed`, `batch.failed`: written once per batch, in the
    /// transaction of its last job's terminal status change) and each webhook of its tenant that
    /// wants it — at most one per (webhook, event), however often
    /// this runs — then moves the cursor, all in one transaction. Returns the deliveries made.
    async fn webhook_fanout(&self, now: DateTime<Utc>, limit: u32) -> DbResult<u64>;
    /// Claims up to `limit` pending deliveries due at `now` for `lease` (their next attempt
    /// moves to `now + lease`, so another sender does not take them meanwhile).
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u32,
    ) -> DbResult<Vec<DueDelivery>>;
    /// Records an attempt's outcome.
    async fn record_delivery(
        &self,
        delivery_id: &str,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> DbResult<()>;

    // --- idempotency keys
    /// Reserves `key` for a request whose body hashes to `request_sha256`, unless it is taken:
    /// `None` means this caller reserved it (and must complete or release it); `Some` is the
    /// existing record (in progress, or finished with a response to replay). A record past its
    /// expiry, or a reservation still unfinished at `stale_before` (its request died), is
    /// replaced.
    async fn idempotency_reserve(
        &self,
        key: &IdempotencyScope<'_>,
        request_sha256: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> DbResult<Option<IdempotencyRecord>>;
    /// Stores the response of a reserved key.
    async fn idempotency_complete(
        &self,
        key: &IdempotencyScope<'_>,
        status_code: u16,
        response_body: &str,
    ) -> DbResult<()>;
    /// Drops an unfinished reservation (its request failed; the key may be used again).
    async fn idempotency_release(&self, key: &IdempotencyScope<'_>) -> DbResult<()>;
    /// Deletes expired keys; returns how many.
    async fn idempotency_sweep(&self, now: DateTime<Utc>) -> DbResult<u64>;

    // --- the queue
    /// Claims the next runnable job (queued and due, or started with an expired lease) for
    /// `worker`, incrementing its attempts. Jobs whose lease expired on their last allowed
    /// attempt become `dead` instead.
    async fn claim_job(
        &self,
        worker: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> DbResult<Option<Claim>>;
    /// Extends the lease; false when the claim is no longer ours.
    async fn heartbeat(&self, claim: &ClaimToken, until: DateTime<Utc>) -> DbResult<bool>;
    /// Completes the job with its outputs; false (and no change) when the claim is no longer ours.
    async fn complete_job(
        &self,
        claim: &ClaimToken,
        outputs: &[JobOutput],
        now: DateTime<Utc>,
    ) -> DbResult<bool> {
        self.complete_job_with_result(claim, outputs, None, now)
            .await
    }
    /// [`Repo::complete_job`], also recording what the job found (`result`, e.g. the
    /// `analyze` report).
    async fn complete_job_with_result(
        &self,
        claim: &ClaimToken,
        outputs: &[JobOutput],
        result: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> DbResult<bool>;
    /// Records a failed attempt; returns the resulting status, or `None` when the claim is no
    /// longer ours.
    async fn fail_job(
        &self,
        claim: &ClaimToken,
        failure: &Failure,
        now: DateTime<Utc>,
    ) -> DbResult<Option<JobStatus>>;
    /// Gives a job back without counting the attempt (graceful shutdown).
    async fn release_job(&self, claim: &ClaimToken, now: DateTime<Utc>) -> DbResult<bool>;

    // --- the Temporal engine: activities drive the same fenced transitions as SQL workers
    /// Starts attempt `attempt` (Temporal's activity attempt, from 1) of a Temporal job: the job
    /// becomes `started` with `attempts = attempt` and a fresh claim token, so `heartbeat`,
    /// `complete_job` and `fail_job` work as for a claimed SQL job, and the token of any earlier
    /// attempt is refused from now on. `None` (no change) when the job is not a Temporal job,
    /// is terminal, or already saw a later attempt.
    async fn start_attempt(
        &self,
        id: JobId,
        attempt: u32,
        worker: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> DbResult<Option<Claim>>;
    /// Ends a job `dead` with `code`/`message` unless it is terminal already (the Temporal
    /// workflow's last word when every attempt's worker was lost). True when it changed.
    async fn mark_dead(
        &self,
        id: JobId,
        code: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> DbResult<bool>;
    /// Temporal jobs created at or before `created_before` whose workflow start was never
    /// acknowledged (the outbox), oldest first.
    async fn undispatched_temporal_jobs(
        &self,
        created_before: DateTime<Utc>,
        limit: u32,
    ) -> DbResult<Vec<Job>>;
    /// Records that Temporal acknowledged the job's workflow start.
    async fn mark_dispatched(&self, id: JobId, now: DateTime<Utc>) -> DbResult<()>;

    /// Counts of jobs per status (for health and metrics).
    async fn job_counts(&self) -> DbResult<Vec<(JobStatus, u64)>>;

    /// Jobs waiting, running or dead, by type and status, with the earliest run time of the
    /// waiting ones (the metrics' queue depth and oldest-queued age). Terminal statuses other
    /// than `dead` are not counted: that would scan the whole history on every scrape.
    async fn queue_stats(&self) -> DbResult<Vec<QueueStat>>;

    /// Waits until a job may have become claimable, or `max` at most. Idle workers call it
    /// between claims. The default just sleeps `max` (polling); PostgreSQL wakes waiters early
    /// through `LISTEN/NOTIFY`. A wake-up is a hint, never a promise: callers claim and wait
    /// again when there is nothing.
    async fn wait_for_work(&self, max: std::time::Duration) {
        tokio::time::sleep(max).await;
    }
}
