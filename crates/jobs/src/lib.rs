//! The worker runtime and the sweeper.
//!
//! A worker claims a job with a lease, heartbeats it from a task that never shares a thread with
//! image work, runs the pipeline on the blocking pool (bounded by `concurrency`), writes outputs
//! under deterministic keys and completes the job with its fencing token. A worker that loses its
//! lease cannot complete the job: the queue's `UPDATE … WHERE lease_token = ?` refuses it.

pub mod fetch;
mod pipeline;
mod sweep;
pub mod webhooks;
mod worker;

pub use pipeline::{
    Checkpoint, PipelineError, PipelineOutput, Rendered, analysis_json, extended_pipeline,
    output_keys, render, render_job, render_variants, run_pipeline, variant_specs,
};
pub use sweep::errors::SweepError;
pub use sweep::{SweepConfig, SweepReport, sweep_once};
pub use worker::{AttemptOutcome, ExtraHeartbeat, Worker, WorkerConfig, backoff};
