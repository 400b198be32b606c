//! Shared state of the HTTP handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use photo_db::Repo;
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
}
