//! The Temporal job engine: every job is a `photo.job` workflow (id `photo-job-{job_id}`) on the
//! configured task queue. Its one step, the activity `photo.process_job`, runs the same code as a
//! SQL worker ([`photo_jobs::Worker::run_job`]) and keeps `job_logs` in step through the same
//! fenced transitions, so the API reads every job's status from our database alone.
//!
//! Names of workflows and activities are pinned (`photo.job`, `photo.process_job`,
//! `photo.mark_dead`), so refactoring the Rust code never breaks running workflows.

mod activities;
mod client;
mod worker;
mod workflow;

pub use activities::JobActivities;
pub use client::{StartedRun, TemporalClient, TemporalError, TemporalSettings, TlsFiles};
pub use worker::{WorkerSettings, run_worker};
pub use workflow::{JobPolicy, JobWorkflow, JobWorkflowInput};

/// The workflow type of a job (pinned).
pub const WORKFLOW_TYPE: &str = "photo.job";
/// The activity that runs one attempt of a job (pinned).
pub const PROCESS_ACTIVITY: &str = "photo.process_job";
/// The activity that records a job `dead` when every attempt's worker was lost (pinned).
pub const MARK_DEAD_ACTIVITY: &str = "photo.mark_dead";
/// Application-failure type of a permanent error (bad input): never retried.
pub const PERMANENT_ERROR: &str = "photo.permanent";
/// Application-failure type of a job that is over (recorded `dead` or terminal): never retried.
pub const FINAL_ERROR: &str = "photo.final";

/// The workflow id of a job: derived from the job id, so starting the same job twice finds the
/// same workflow.
pub fn workflow_id(job_id: photo_core::JobId) -> String {
    format!("photo-job-{job_id}")
}
