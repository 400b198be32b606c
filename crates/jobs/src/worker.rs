//! The worker loop.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use photo_core::JobStatus;
use photo_db::{Claim, Failure, Repo};
use photo_imaging::Limits;
use photo_storage::ObjectStore;
use rand::Rng;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::pipeline::{Checkpoint, PipelineError, output_keys, run_pipeline};

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's name in `lease_owner` (host:pid:n).
    pub worker_id: String,
    /// Jobs run at once; each holds one CPU thread while transforming.
    pub concurrency: usize,
    /// How long a claim is valid without a heartbeat.
    pub lease: Duration,
    /// How often the lease is renewed (well under `lease`).
    pub heartbeat: Duration,
    /// Longest idle wait between claim attempts; [`Repo::wait_for_work`] may end it sooner.
    pub poll_interval: Duration,
    /// First retry delay; doubles per attempt.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Wall-clock limit of one attempt.
    pub job_timeout: Duration,
    /// How long shutdown waits for running jobs before releasing them.
    pub shutdown_grace: Duration,
    /// Decoder limits.
    pub limits: Limits,
    /// Largest source object read.
    pub max_source_bytes: u64,
    /// Limits and allow-list of `source_url` fetches.
    pub fetch: crate::fetch::FetchConfig,
}

/// Exponential backoff with jitter: `base·2^(attempt-1)`, capped at `max`, then a uniformly
/// random value in its upper half, so retries of many jobs spread out.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    let jitter = rand::rng().random_range(0.5..=1.0);
    capped.mul_f64(jitter)
}

/// A worker: claims and runs jobs until shut down.
#[derive(Debug, Clone)]
pub struct Worker {
    repo: Arc<dyn Repo>,
    store: Arc<dyn ObjectStore>,
    cfg: Arc<WorkerConfig>,
    /// Threads doing image work, including ones abandoned by a time limit.
    cpu: Arc<Semaphore>,
}

/// Temporal's activity heartbeat, called beside every lease renewal.
pub type ExtraHeartbeat =
    Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// What became of one attempt, as recorded in `job_logs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Completed with its outputs.
    Completed,
    /// A transient failure; the next attempt is due after `delay` (recorded as `retrying`).
    Retrying {
        /// The backoff chosen (with jitter), also recorded as the job's next run time.
        delay: Duration,
        /// Stable error code.
        code: String,
        /// Error message.
        message: String,
    },
    /// A permanent failure (bad input): `failed`, never retried.
    Failed {
        /// Stable error code.
        code: String,
        /// Error message.
        message: String,
    },
    /// A transient failure on the last allowed attempt: `dead`.
    Dead {
        /// Stable error code.
        code: String,
        /// Error message.
        message: String,
    },
    /// The claim's token was refused: another attempt owns the job now. Nothing recorded.
    LeaseLost,
    /// Handed back at shutdown without counting the attempt.
    Released,
    /// The job was cancelled while the attempt ran: it stopped at a step boundary (or its
    /// completion was refused) and whatever it had written was removed.
    Cancelled,
    /// The result could not be recorded (database error); the attempt will be retried.
    NotRecorded(String),
}

enum Outcome {
    Done(Result<crate::pipeline::PipelineOutput, PipelineError>),
    TimedOut,
    Stopped,
}

impl Worker {
    /// A worker over the given repository and store.
    pub fn new(repo: Arc<dyn Repo>, store: Arc<dyn ObjectStore>, cfg: WorkerConfig) -> Self {
        Self {
            repo,
            store,
            // Jobs beyond the core count overlap their I/O (download, upload) with others'
            // pixel work; the pixel work itself never runs on more threads than there are cores.
            cpu: Arc::new(Semaphore::new(cfg.concurrency.clamp(
                1,
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            ))),
            cfg: Arc::new(cfg),
        }
    }

    /// Runs until `shutdown` turns true; then stops claiming, waits up to the grace period for
    /// running jobs, and releases the rest so another worker takes them at once.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.cfg.concurrency.max(1)));
        let (hard_stop_tx, hard_stop) = watch::channel(false);
        let mut running = JoinSet::new();
        tracing::info!(worker = %self.cfg.worker_id, concurrency = self.cfg.concurrency, "worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.changed() => break,
            };
            let lease =
                chrono::Duration::from_std(self.cfg.lease).unwrap_or(chrono::Duration::seconds(60));
            match self
                .repo
                .claim_job(&self.cfg.worker_id, lease, Utc::now())
                .await
            {
                Ok(Some(claim)) => {
                    let me = self.clone();
                    let stop = hard_stop.clone();
                    running.spawn(async move {
                        me.run_claim(claim, stop).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    // Woken early when the database announces work (PostgreSQL NOTIFY); the
                    // poll interval stays the fallback (retries coming due, expired leases).
                    tokio::select! {
                        _ = self.repo.wait_for_work(self.cfg.poll_interval) => {}
                        _ = shutdown.changed() => break,
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::warn!(error = %e, "claiming a job failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(self.cfg.poll_interval.max(Duration::from_secs(1))) => {}
                        _ = shutdown.changed() => break,
                    }
                }
            }
            // Reap finished tasks so the set does not grow.
            while running.try_join_next().is_some() {}
        }
        tracing::info!(
            running = running.len(),
            "worker stopping; waiting for running jobs"
        );
        let drained = tokio::time::timeout(self.cfg.shutdown_grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            let _ = hard_stop_tx.send(true);
            while running.join_next().await.is_some() {}
        }
        tracing::info!("worker stopped");
    }

    async fn run_claim(&self, claim: Claim, hard_stop: watch::Receiver<bool>) {
        self.run_job(claim, hard_stop, None).await;
    }

    /// Runs one claimed attempt to its end — the work both engines share: heartbeat the lease
    /// (and `beat`, Temporal's heartbeat, when given) every `heartbeat` from a task of its own,
    /// run the pipeline within the time limit, and record the result with the claim's fencing
    /// token (`completed`, or `retrying`/`failed`/`dead` by the same rules for both engines).
    ///
    /// The attempt runs in a `job` span that continues the submitting request's trace, and is
    /// counted in `photo_api_job_duration_seconds` and `photo_api_job_attempts_total`.
    pub async fn run_job(
        &self,
        claim: Claim,
        hard_stop: watch::Receiver<bool>,
        beat: Option<ExtraHeartbeat>,
    ) -> AttemptOutcome {
        let job_type = claim.job.job_type.as_str();
        let start = std::time::Instant::now();
        let job = &claim.job;
        let span = tracing::info_span!("job", job_id = %job.job_id, tenant = %job.tenant, job_type = %job.job_type, attempt = job.attempts);
        if let Some(tp) = &job.trace_context {
            photo_core::telemetry::set_parent(&span, tp);
        }
        let outcome = self
            .run_job_inner(claim, hard_stop, beat, span.clone())
            .instrument(span)
            .await;
        let label = match &outcome {
            AttemptOutcome::Completed => "completed",
            AttemptOutcome::Retrying { .. } => "retried",
            AttemptOutcome::Failed { .. } => "failed",
            AttemptOutcome::Dead { .. } => "dead",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::LeaseLost
            | AttemptOutcome::Released
            | AttemptOutcome::NotRecorded(_) => "interrupted",
        };
        let m = photo_core::metrics::metrics();
        m.job_attempts.inc([job_type, label]);
        m.job_duration
            .observe([job_type, label], start.elapsed().as_secs_f64());
        outcome
    }

    async fn run_job_inner(
        &self,
        claim: Claim,
        mut hard_stop: watch::Receiver<bool>,
        beat: Option<ExtraHeartbeat>,
        span: tracing::Span,
    ) -> AttemptOutcome {
        let job = claim.job;
        let token = claim.token;
        tracing::info!(parent: &span, "job started");

        // The heartbeat runs on its own task, so a long transform on the blocking pool never
        // delays it.
        let (lost_tx, lost) = watch::channel(false);
        let hb = {
            let repo = self.repo.clone();
            let token = token.clone();
            let cfg = self.cfg.clone();
            let span = span.clone();
            let in_span = span.clone();
            tokio::spawn(async move {
                let lease =
                    chrono::Duration::from_std(cfg.lease).unwrap_or(chrono::Duration::seconds(60));
                loop {
                    tokio::time::sleep(cfg.heartbeat).await;
                    if let Some(beat) = &beat {
                        beat().await;
                    }
                    match repo.heartbeat(&token, Utc::now() + lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(parent: &span, "lease lost; another worker owns the job now");
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Err(e) => tracing::warn!(parent: &span, error = %e, "heartbeat failed"),
                    }
                }
            }.instrument(in_span))
        };

        // Each step boundary renews the lease through the claim's token: a cancelled job (or
        // one another attempt owns now) refuses it, and the attempt stops before its next step.
        let checkpoint: Box<Checkpoint> = {
            let repo = self.repo.clone();
            let token = token.clone();
            let lease =
                chrono::Duration::from_std(self.cfg.lease).unwrap_or(chrono::Duration::seconds(60));
            Box::new(move || {
                let repo = repo.clone();
                let token = token.clone();
                // A database hiccup is not a cancellation (hence `true` on an error); the
                // heartbeat task and the fenced completion still guard the job.
                Box::pin(async move {
                    repo.heartbeat(&token, Utc::now() + lease)
                        .await
                        .unwrap_or(true)
                })
            })
        };
        let work = run_pipeline(
            self.store.as_ref(),
            &job,
            self.cfg.limits,
            self.cfg.max_source_bytes,
            self.cpu.clone(),
            checkpoint.as_ref(),
            &self.cfg.fetch,
        )
        .instrument(span.clone());
        let outcome = tokio::select! {
            r = tokio::time::timeout(self.cfg.job_timeout, work) => match r {
                Ok(r) => Outcome::Done(r),
                Err(_) => Outcome::TimedOut,
            },
            _ = hard_stop.wait_for(|s| *s) => Outcome::Stopped,
        };
        hb.abort();
        let now = Utc::now();
        if *lost.borrow() || matches!(outcome, Outcome::Done(Err(PipelineError::Stopped))) {
            return self.stopped(&span, &job).await;
        }
        let result = match outcome {
            Outcome::Stopped => match self.repo.release_job(&token, now).await {
                Ok(_) => {
                    tracing::info!(parent: &span, "job released at shutdown");
                    return AttemptOutcome::Released;
                }
                Err(e) => Err(e),
            },
            Outcome::Done(Ok(out)) => {
                let outputs = out.outputs;
                let done = self
                    .repo
                    .complete_job_with_result(&token, &outputs, out.result.as_ref(), now)
                    .await
                    .map(|ok| {
                        if ok {
                            tracing::info!(parent: &span, outputs = outputs.len(), "job completed");
                            AttemptOutcome::Completed
                        } else {
                            AttemptOutcome::LeaseLost
                        }
                    });
                if matches!(done, Ok(AttemptOutcome::LeaseLost)) {
                    // Cancelled after the last step boundary: the output just written must go.
                    return self.stopped(&span, &job).await;
                }
                done
            }
            Outcome::Done(Err(e)) => self.record_failure(&span, &token, job.attempts, e).await,
            Outcome::TimedOut => {
                let e = PipelineError::Retryable {
                    code: "timeout",
                    message: format!(
                        "the job exceeded its time limit of {:?}",
                        self.cfg.job_timeout
                    ),
                };
                self.record_failure(&span, &token, job.attempts, e).await
            }
        };
        match result {
            Ok(o) => o,
            Err(e) => {
                // The lease will expire and the job be retried (SQL: by another claim;
                // Temporal: by the activity's next attempt).
                tracing::error!(parent: &span, error = %e, "recording the job result failed");
                AttemptOutcome::NotRecorded(e.to_string())
            }
        }
    }

    /// The claim stopped being current mid-attempt. A cancelled job's outputs are removed (by
    /// their deterministic keys, recorded or not); otherwise another attempt owns the job and
    /// nothing is touched.
    async fn stopped(&self, span: &tracing::Span, job: &photo_db::Job) -> AttemptOutcome {
        match self.repo.get_job_any_tenant(job.job_id).await {
            Ok(Some(now)) if now.status == JobStatus::Cancelled => {
                for key in output_keys(job) {
                    if let Err(e) = self
                        .store
                        .delete(photo_storage::Bucket::Processed, &key)
                        .await
                    {
                        tracing::warn!(parent: span, error = %e, %key, "removing a cancelled job's output failed");
                    }
                }
                tracing::info!(parent: span, "job cancelled; the attempt stopped and its outputs were removed");
                AttemptOutcome::Cancelled
            }
            Ok(_) => {
                tracing::warn!(parent: span, "not recording the result: the lease was lost");
                AttemptOutcome::LeaseLost
            }
            Err(e) => {
                tracing::warn!(parent: span, error = %e, "not recording the result: the claim is no longer current");
                AttemptOutcome::LeaseLost
            }
        }
    }

    async fn record_failure(
        &self,
        span: &tracing::Span,
        token: &photo_db::ClaimToken,
        attempt: u32,
        e: PipelineError,
    ) -> Result<AttemptOutcome, photo_db::DbError> {
        let now = Utc::now();
        let delay = match &e {
            PipelineError::Permanent { .. } | PipelineError::Stopped => None,
            PipelineError::Retryable { .. } => Some(backoff(
                attempt,
                self.cfg.backoff_base,
                self.cfg.backoff_max,
            )),
        };
        let failure = Failure {
            code: e.code().to_owned(),
            message: e.to_string(),
            retry_at: delay.map(|d| now + chrono::Duration::from_std(d).unwrap_or_default()),
        };
        let status = self.repo.fail_job(token, &failure, now).await?;
        tracing::warn!(parent: span, code = e.code(), error = %e, status = ?status, "job attempt failed");
        let (code, message) = (failure.code, failure.message);
        Ok(match status {
            None => AttemptOutcome::LeaseLost,
            Some(JobStatus::Retrying) => AttemptOutcome::Retrying {
                delay: delay.unwrap_or_default(),
                code,
                message,
            },
            Some(JobStatus::Dead) => AttemptOutcome::Dead { code, message },
            Some(_) => AttemptOutcome::Failed { code, message },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempt in 1..=10 {
            let full = base.saturating_mul(1 << (attempt - 1)).min(max);
            for _ in 0..50 {
                let d = backoff(attempt, base, max);
                assert!(
                    d <= full && d >= full / 2,
                    "attempt {attempt}: {d:?} vs {full:?}"
                );
            }
        }
        assert!(backoff(1000, base, max) <= max);
        let samples: std::collections::HashSet<_> =
            (0..20).map(|_| backoff(5, base, max)).collect();
        assert!(samples.len() > 1, "jitter varies the delay");
    }
}
