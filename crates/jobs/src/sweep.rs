//! Expiry: raw objects of uploads past their TTL (quarantined or promoted), uncompleted uploads,
//! staging leftovers,
//! expired idempotency keys, finished jobs past their TTL (with their outputs).

use chrono::{DateTime, Utc};
use photo_core::ObjectKey;
use photo_core::key::{QUARANTINE_CHECKS_PREFIX, QUARANTINE_PREFIX};
use photo_db::Repo;
use photo_storage::{Bucket, ObjectStore};

/// Sweeper settings.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Staging files older than this are leftovers of interrupted writes.
    pub staging_max_age: chrono::Duration,
    /// Rows handled per batch.
    pub batch: u32,
    /// Finished jobs older than this are deleted with their outputs; `None` keeps them.
    pub job_ttl: Option<chrono::Duration>,
}

/// What one sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Uploads expired (raw object deleted).
    pub uploads_expired: u64,
    /// Staging files removed (and scan copies of unfinished `complete` attempts).
    pub staging_removed: u64,
    /// Objects of deleted or replaced tenant files (and of abandoned file writes) removed.
    pub file_objects_removed: u64,
    /// Expired `Idempotency-Key` records deleted.
    pub idempotency_keys_expired: u64,
    /// Finished jobs past their TTL deleted (row, history and outputs).
    pub jobs_expired: u64,
}

/// Runs one sweep: deletes raw objects of uploads past `expires_at` (whether completed or not)
/// and marks them expired, then removes stale staging files, then the objects of deleted tenant
/// files whose grace period is over.
pub async fn sweep_once(
    repo: &dyn Repo,
    store: &dyn ObjectStore,
    cfg: &SweepConfig,
    now: DateTime<Utc>,
) -> errors::Result<SweepReport> {
    let mut report = SweepReport::default();
    loop {
        let batch = repo.expired_uploads(now, cfg.batch).await?;
        if batch.is_empty() {
            break;
        }
        for up in &batch {
            // Delete the object first: if we crash in between, the row is swept again. With
            // malware scanning, an upload's object has a twin — the quarantined object of a
            // promoted upload, or the promoted copy of one still in quarantine — which a crash
            // mid-`complete` (or a client re-posting to its quarantine URL) may have left: that
            // goes too.
            store.delete(Bucket::Raw, &up.key).await?;
            let twin = match up.key.promoted() {
                Some(p) => Some(p),
                None => ObjectKey::parse(&format!("{QUARANTINE_PREFIX}{}", up.key)).ok(),
            };
            if let Some(twin) = twin {
                store.delete(Bucket::Raw, &twin).await?;
            }
            repo.mark_upload_expired(up.upload_id).await?;
            report.uploads_expired += 1;
        }
        if (batch.len() as u32) < cfg.batch {
            break;
        }
    }
    if let Some(ttl) = cfg.job_ttl {
        loop {
            let batch = repo.expired_jobs(now - ttl, cfg.batch).await?;
            for job in &batch {
                // Outputs first (recorded ones and the deterministic keys of unrecorded ones):
                // if we crash in between, the row is swept again.
                let mut keys: Vec<_> = job.outputs.iter().map(|o| o.key.clone()).collect();
                keys.extend(crate::pipeline::output_keys(job));
                for key in keys {
                    store.delete(Bucket::Processed, &key).await?;
                }
                repo.delete_job(job.job_id).await?;
                report.jobs_expired += 1;
            }
            if (batch.len() as u32) < cfg.batch {
                break;
            }
        }
    }
    report.staging_removed = store.sweep_staging(now - cfg.staging_max_age).await?;
    // Scan copies of `complete` attempts that never finished (a crash mid-scan): each attempt
    // deletes its own, so anything older than the staging age is a leftover.
    let mut page: Option<String> = None;
    loop {
        let listed = store
            .list(
                Bucket::Raw,
                QUARANTINE_CHECKS_PREFIX,
                false,
                page.as_deref(),
                cfg.batch as usize,
            )
            .await?;
        for o in &listed.objects {
            if o.meta.modified < now - cfg.staging_max_age {
                store.delete(Bucket::Raw, &o.key).await?;
                report.staging_removed += 1;
            }
        }
        match listed.next_page {
            Some(next) => page = Some(next),
            None => break,
        }
    }
    loop {
        let due = repo.file_gc_due(now, cfg.batch).await?;
        for key in &due {
            // Object first: if we crash in between, the queue entry makes us try again.
            store.delete(Bucket::Processed, key).await?;
            repo.file_gc_forget(key).await?;
            report.file_objects_removed += 1;
        }
        if (due.len() as u32) < cfg.batch {
            break;
        }
    }
    report.idempotency_keys_expired = repo.idempotency_sweep(now).await?;
    Ok(report)
}

/// Errors of the sweeper.
pub mod errors {
    /// A sweep failure.
    #[derive(Debug, thiserror::Error)]
    pub enum SweepError {
        /// Database.
        #[error(transparent)]
        Db(#[from] photo_db::DbError),
        /// Storage.
        #[error(transparent)]
        Store(#[from] photo_storage::StoreError),
    }
    /// Result alias.
    pub type Result<T> = std::result::Result<T, SweepError>;
}
