#![expect(
    missing_debug_implementations,
    reason = "the #[activities] macro generates marker structs without Debug"
)]
//! The activities of the `photo.job` workflow.

use std::sync::Arc;

use chrono::Utc;
use photo_core::JobId;
use photo_db::Repo;
use photo_jobs::{AttemptOutcome, ExtraHeartbeat, Worker};
use serde::{Deserialize, Serialize};
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tokio::sync::watch;

use crate::{FINAL_ERROR, PERMANENT_ERROR};

/// Input of `photo.mark_dead`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkDeadInput {
    /// The job.
    pub job_id: String,
}

/// The activity implementations: the shared job runner plus what it needs to start attempts.
#[derive(Debug)]
pub struct JobActivities {
    worker: Worker,
    repo: Arc<dyn Repo>,
    worker_id: String,
    lease: chrono::Duration,
    hard_stop: watch::Receiver<bool>,
}

impl JobActivities {
    /// Activities over the SQL worker's runner. `worker_id` is recorded as the attempt's
    /// `lease_owner` (host:pid:name, as for SQL workers); `hard_stop` turning true ends running
    /// attempts (the shutdown grace is over).
    pub fn new(
        worker: Worker,
        repo: Arc<dyn Repo>,
        worker_id: String,
        lease: std::time::Duration,
        hard_stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            worker,
            repo,
            worker_id,
            lease: chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60)),
            hard_stop,
        }
    }
}

fn failure(
    type_name: &str,
    message: String,
    non_retryable: bool,
    delay: Option<std::time::Duration>,
) -> ActivityError {
    let err: Box<dyn std::error::Error + Send + Sync> = message.into();
    let f = ApplicationFailure::builder(err)
        .type_name(type_name.to_owned())
        .non_retryable(non_retryable)
        .maybe_next_retry_delay(delay)
        .build();
    ActivityError::application(f)
}

#[activities]
impl JobActivities {
    /// One attempt of a job: start it in `job_logs` as attempt N (Temporal's attempt number),
    /// run it exactly as a SQL worker does, and tell Temporal what was recorded: success, a
    /// retryable failure (with our own backoff as the next delay), or a non-retryable one.
    #[activity(name = "photo.process_job")]
    pub async fn process_job(
        self: Arc<Self>,
        ctx: ActivityContext,
        job_id: String,
    ) -> Result<String, ActivityError> {
        let id: JobId = job_id.parse().map_err(|_| {
            failure(
                PERMANENT_ERROR,
                format!("not a job id: {job_id:?}"),
                true,
                None,
            )
        })?;
        let attempt = ctx.info().attempt.max(1);
        let claim = match self
            .repo
            .start_attempt(id, attempt, &self.worker_id, self.lease, Utc::now())
            .await
        {
            Ok(Some(c)) => c,
            Ok(None) => {
                // Terminal already (a duplicate run of a finished job), or not ours.
                let status = match self.repo.get_job_any_tenant(id).await {
                    Ok(Some(j)) => j.status.as_str().to_owned(),
                    Ok(None) => "missing".to_owned(),
                    Err(e) => return Err(failure("database", e.to_string(), false, None)),
                };
                tracing::info!(job_id = %id, attempt, %status, "attempt not started: the job is not runnable");
                return if status == "completed" {
                    Ok(status)
                } else {
                    Err(failure(
                        FINAL_ERROR,
                        format!("the job is {status}; nothing to run"),
                        true,
                        None,
                    ))
                };
            }
            Err(e) => return Err(failure("database", e.to_string(), false, None)),
        };
        let beat: ExtraHeartbeat = Box::new(move || {
            let ctx = ctx.clone();
            Box::pin(async move {
                if let Err(e) = ctx.record_heartbeat(()).await {
                    tracing::warn!(error = %e, "Temporal heartbeat failed");
                }
            })
        });
        match self
            .worker
            .run_job(claim, self.hard_stop.clone(), Some(beat))
            .await
        {
            AttemptOutcome::Completed => Ok("completed".to_owned()),
            AttemptOutcome::Retrying {
                delay,
                code,
                message,
            } => Err(failure(&code, message, false, Some(delay))),
            AttemptOutcome::Failed { code, message } => Err(failure(
                PERMANENT_ERROR,
                format!("{code}: {message}"),
                true,
                None,
            )),
            AttemptOutcome::Dead { code, message } => Err(failure(
                FINAL_ERROR,
                format!("{code}: {message}"),
                true,
                None,
            )),
            AttemptOutcome::LeaseLost => Err(failure(
                "lease_lost",
                "another attempt owns the job now".to_owned(),
                false,
                None,
            )),
            AttemptOutcome::Cancelled => Err(failure(
                FINAL_ERROR,
                "the job was cancelled".to_owned(),
                true,
                None,
            )),
            AttemptOutcome::Released => Err(failure(
                "shutting_down",
                "the worker shut down before the job finished".to_owned(),
                false,
                None,
            )),
            AttemptOutcome::NotRecorded(e) => Err(failure("database", e, false, None)),
        }
    }

    /// Records the job `dead` with `worker_lost` (unless it ended otherwise meanwhile).
    #[activity(name = "photo.mark_dead")]
    pub async fn mark_dead(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: MarkDeadInput,
    ) -> Result<(), ActivityError> {
        let id: JobId = input.job_id.parse().map_err(|_| {
            failure(
                PERMANENT_ERROR,
                format!("not a job id: {:?}", input.job_id),
                true,
                None,
            )
        })?;
        let changed = self
            .repo
            .mark_dead(
                id,
                "worker_lost",
                "the worker running the job stopped responding on every attempt",
                Utc::now(),
            )
            .await
            .map_err(|e| failure("database", e.to_string(), false, None))?;
        tracing::warn!(job_id = %id, changed, "job dead: its worker was lost on every attempt");
        Ok(())
    }
}
