#![expect(
    missing_debug_implementations,
    reason = "the #[workflow_methods] macro generates marker structs without Debug"
)]
//! The `photo.job` workflow. Workflow code must be deterministic: it only schedules activities
//! (no I/O, clocks, randomness, tokio sleeps or spawns); every setting it uses arrives in its
//! input, fixed when the job was submitted, so a replay makes the same decisions.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, WorkflowContext, WorkflowResult, WorkflowTermination,
};

use crate::activities::{JobActivities, MarkDeadInput};
use crate::{FINAL_ERROR, PERMANENT_ERROR};

/// How jobs run on Temporal, from our settings (`PHOTO_API_JOB_TIMEOUT`, `PHOTO_API_JOB_LEASE`,
/// `PHOTO_API_RETRY_BACKOFF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobPolicy {
    /// Time limit of one attempt (enforced by the activity itself, like the SQL worker).
    pub job_timeout: Duration,
    /// A worker silent this long has lost the attempt (Temporal's heartbeat timeout).
    pub lease: Duration,
    /// First retry delay; doubled per attempt.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

/// The workflow's input: the job and the policy it was submitted under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobWorkflowInput {
    /// The job id (`job_logs.job_id`).
    pub job_id: String,
    /// Attempts allowed (the job's `max_attempts`).
    pub max_attempts: u32,
    /// Start-to-close timeout of one attempt, ms.
    pub start_to_close_ms: u64,
    /// Heartbeat timeout, ms.
    pub heartbeat_timeout_ms: u64,
    /// First retry interval, ms.
    pub initial_interval_ms: u64,
    /// Longest retry interval, ms.
    pub maximum_interval_ms: u64,
}

impl JobWorkflowInput {
    /// The input of a job's workflow under `policy`. Start-to-close is the job's time limit plus
    /// one lease: the activity enforces the limit itself and records a `timeout` failure as the
    /// SQL worker does; Temporal's own timeout only catches a worker that hangs past that.
    pub fn new(job_id: String, max_attempts: u32, policy: &JobPolicy) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            job_id,
            max_attempts: max_attempts.max(1),
            start_to_close_ms: ms(policy.job_timeout + policy.lease),
            heartbeat_timeout_ms: ms(policy.lease),
            initial_interval_ms: ms(policy.backoff_base).max(1),
            maximum_interval_ms: ms(policy.backoff_max.max(policy.backoff_base)).max(1),
        }
    }
}

/// The workflow of one job.
#[workflow]
#[derive(Debug, Default)]
pub struct JobWorkflow;

#[workflow_methods]
impl JobWorkflow {
    /// Runs `photo.process_job` under the job's retry policy; when the last attempt was lost
    /// with its worker (a timeout), runs `photo.mark_dead` so `job_logs` ends `dead`.
    #[run(name = "photo.job")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: JobWorkflowInput,
    ) -> WorkflowResult<String> {
        let ms = Duration::from_millis;
        // Coefficient 2 and our first interval, like the SQL queue's backoff. The activity
        // passes its own jittered delay as `next_retry_delay` for failures it records, so both
        // engines record the same `next_attempt_at`; this policy's intervals apply to retries
        // after a lost worker.
        let retry = RetryPolicy::builder()
            .initial_interval(ms(input.initial_interval_ms))
            .backoff_coefficient(2.0)
            .maximum_interval(ms(input.maximum_interval_ms))
            .maximum_attempts(input.max_attempts)
            .non_retryable_error_types([PERMANENT_ERROR, FINAL_ERROR])
            .build();
        let opts = ActivityOptions::with_start_to_close_timeout(ms(input.start_to_close_ms))
            .heartbeat_timeout(ms(input.heartbeat_timeout_ms))
            .retry_policy(retry)
            .build();
        match ctx
            .execute_activity(JobActivities::process_job, input.job_id.clone(), opts)
            .await
        {
            Ok(status) => Ok(status),
            // `POST /jobs/{id}/cancel` recorded the job `cancelled` and asked Temporal to cancel
            // this workflow; the running attempt was asked to stop with it (and stops at its
            // next step boundary, where it finds the row cancelled). The workflow ends
            // cancelled, not failed.
            Err(e) if e.as_cancelled().is_some() || ctx.cancellation_token().is_cancelled() => {
                Err(WorkflowTermination::cancelled())
            }
            Err(e) if e.as_timeout().is_some() => {
                // Every attempt's worker stopped heartbeating (killed, frozen, partitioned).
                let mark = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
                    .retry_policy(
                        RetryPolicy::builder()
                            .initial_interval(Duration::from_secs(1))
                            .maximum_interval(Duration::from_secs(30))
                            .build(),
                    )
                    .build();
                ctx.execute_activity(
                    JobActivities::mark_dead,
                    MarkDeadInput {
                        job_id: input.job_id.clone(),
                    },
                    mark,
                )
                .await?;
                Err(ApplicationFailure::non_retryable(
                    "the worker running the job stopped responding on every attempt",
                )
                .into())
            }
            Err(e) => Err(e.into()),
        }
    }
}
