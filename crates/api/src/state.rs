//! Shared state of the HTTP handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use photo_core::JobId;
use photo_db::{Job, Repo, TemporalRoute};
use photo_imaging::Limits;
use photo_storage::{ObjectStore, UrlSigner};

/// Settings the handlers need.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest `max_bytes` accepted at init (`MAX_UPLOAD_SIZE`).
    pub max_upload_size: u64,
    /// Lifetime of upload URLs (`PRESIGN_EXPIRES_SECONDS`).
    pub presign_expires: Duration,
    /// Lifetime of signed download URLs in job responses.
    pub download_url_ttl: Duration,
    /// How long raw uploads live.
    pub raw_ttl: Duration,
    /// Header limits checked at completion.
    pub limits: Limits,
    /// Attempts before a job is dead.
    pub max_attempts: u32,
    /// SHA-256 of the `API_KEY` bootstrap key, when set.
    pub bootstrap_key_sha256: Option<[u8; 32]>,
    /// Whether `/health` reports the worker supervisor (serve with workers).
    pub report_workers: bool,
    /// How long `Idempotency-Key` responses are kept for replay.
    pub idempotency_ttl: Duration,
    /// Most items in one `POST /batches`.
    pub max_batch_size: usize,
    /// Jobs queued when uploads complete (`PHOTO_API_PRESETS`, `PHOTO_API_DEFAULT_PRESET`).
    pub presets: crate::presets::Presets,
    /// Limits of the tenant file API.
    pub files: FilesConfig,
}

/// Limits of the tenant file API.
#[derive(Debug, Clone)]
pub struct FilesConfig {
    /// Largest single file (`PHOTO_API_FILES_MAX_SIZE`).
    pub max_file_size: u64,
    /// Most files in one `upload-multiple` request.
    pub max_files_per_request: usize,
    /// Most entries one copy or move may touch.
    pub max_tree_entries: u64,
    /// How long a deleted or replaced file's bytes stay before the sweeper removes them.
    pub gc_delay: std::time::Duration,
    /// Longest lifetime of a presigned download URL.
    pub max_url_ttl: std::time::Duration,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            max_file_size: 25_000_000,
            max_files_per_request: 100,
            max_tree_entries: 10_000,
            gc_delay: std::time::Duration::from_secs(3600),
            max_url_ttl: std::time::Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// State of the supervised worker process(es), for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WorkerState {
    /// Not started yet.
    Starting = 0,
    /// Running.
    Up = 1,
    /// Exited; being restarted.
    Restarting = 2,
    /// Runs elsewhere (`--no-workers`).
    External = 3,
}

/// A shared, lock-free cell holding the [`WorkerState`].
#[derive(Debug, Clone, Default)]
pub struct WorkerHealth(Arc<AtomicU8>);

impl WorkerHealth {
    /// Records a new state.
    pub fn set(&self, s: WorkerState) {
        self.0.store(s as u8, Ordering::Relaxed);
    }

    /// The current state.
    pub fn get(&self) -> WorkerState {
        match self.0.load(Ordering::Relaxed) {
            1 => WorkerState::Up,
            2 => WorkerState::Restarting,
            3 => WorkerState::External,
            _ => WorkerState::Starting,
        }
    }
}

/// A readiness check of an optional dependency (the Temporal server), reported by `/health`
/// under its name. The API knows only this trait, never the dependency's SDK.
#[async_trait::async_trait]
pub trait HealthCheck: Send + Sync + std::fmt::Debug {
    /// The key in the `/health` report.
    fn name(&self) -> &'static str;
    /// What kind of adapter (shown as `kind`).
    fn kind(&self) -> Option<String> {
        None
    }
    /// Whether the service is unready without it.
    fn required(&self) -> bool {
        true
    }
    /// `Err` with a reason when down.
    async fn check(&self) -> Result<(), String>;
}

/// An outside job engine (Temporal): jobs are recorded with its route and handed to it after
/// the row is inserted. Without one, jobs go to the SQL queue.
#[async_trait::async_trait]
pub trait JobDispatcher: Send + Sync + std::fmt::Debug {
    /// Where a job runs (workflow id and task queue), recorded with the job.
    fn route(&self, job_id: JobId) -> TemporalRoute;
    /// Starts the job's workflow. Idempotent: a job already started counts as success. An
    /// error leaves the job in the outbox, from which `serve` starts it later.
    async fn dispatch(&self, job: &Job) -> Result<(), String>;
    /// Asks the engine to cancel the job's run (its row is already `cancelled`). Cancelling a
    /// run that already ended, or never started, is a success.
    async fn cancel(&self, job: &Job) -> Result<(), String>;
}

/// Everything a handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Database.
    pub repo: Arc<dyn Repo>,
    /// Objects.
    pub store: Arc<dyn ObjectStore>,
    /// Verifies the local adapter's signed URLs.
    pub signer: UrlSigner,
    /// Settings.
    pub cfg: Arc<ApiConfig>,
    /// Worker supervisor state.
    pub workers: WorkerHealth,
    /// The outside job engine, when one is configured.
    pub dispatcher: Option<Arc<dyn JobDispatcher>>,
    /// Extra readiness checks (the job engine's server).
    pub checks: Vec<Arc<dyn HealthCheck>>,
    /// Verifies JWT bearer tokens, when configured.
    pub jwt: Option<Arc<crate::jwt::JwtVerifier>>,
    /// Rate limits, size limits, CORS and security headers.
    pub edge: Arc<crate::edge::Edge>,
    /// Scans uploads before they are promoted, when configured.
    pub scanner: Option<crate::scan::Clamd>,
}
