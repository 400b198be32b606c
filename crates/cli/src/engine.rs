//! The Temporal engine's wiring: the API's dispatcher and health check, the outbox loop of
//! `serve`, and the Temporal worker of `photo-api worker`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use photo_api_http::{HealthCheck, JobDispatcher};
use photo_core::JobId;
use photo_db::{Job, Repo, TemporalRoute};
use photo_temporal::{JobPolicy, TemporalClient};
use tokio::sync::watch;

use crate::config::Config;

/// Connects to the configured Temporal, failing start-up with a message that names the target.
pub async fn connect(cfg: &Config) -> anyhow::Result<Option<TemporalClient>> {
    let Some(t) = &cfg.temporal else {
        return Ok(None);
    };
    let client = TemporalClient::connect(t.clone()).await.with_context(|| {
        format!(
            "connecting to Temporal (TEMPORAL_TARGET={}, TEMPORAL_NAMESPACE={}); unset \
             TEMPORAL_TARGET to run jobs on the built-in SQL queue",
            t.target, t.namespace
        )
    })?;
    tracing::info!(target = %t.target, namespace = %t.namespace, task_queue = %t.task_queue, "connected to Temporal");
    Ok(Some(client))
}

/// How jobs run on Temporal, from the settings.
pub fn policy(cfg: &Config) -> JobPolicy {
    JobPolicy {
        job_timeout: cfg.job_timeout,
        lease: cfg.job_lease,
        backoff_base: cfg.retry_backoff,
        backoff_max: Duration::from_secs(300).max(cfg.retry_backoff),
    }
}

/// How long a submit waits for Temporal to acknowledge a workflow start.
const DISPATCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts job workflows for the API.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    pub client: TemporalClient,
    pub policy: JobPolicy,
}

#[async_trait::async_trait]
impl JobDispatcher for Dispatcher {
    fn route(&self, job_id: JobId) -> TemporalRoute {
        TemporalRoute {
            workflow_id: photo_temporal::workflow_id(job_id),
            task_queue: self.client.settings().task_queue.clone(),
        }
    }

    async fn dispatch(&self, job: &Job) -> Result<(), String> {
        // Bounded: with Temporal unreachable the client would keep retrying, and a submit must
        // answer; the outbox starts the workflow once Temporal is back.
        let run = tokio::time::timeout(
            DISPATCH_TIMEOUT,
            self.client.start_job_workflow(job, &self.policy),
        )
        .await
        .map_err(|_| format!("no answer from Temporal within {DISPATCH_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
        tracing::debug!(job_id = %job.job_id, workflow_id = %run.workflow_id, run_id = %run.run_id, existing = run.existing, "workflow started");
        Ok(())
    }

    async fn cancel(&self, job: &Job) -> Result<(), String> {
        let Some(route) = &job.temporal else {
            return Ok(());
        };
        tokio::time::timeout(
            DISPATCH_TIMEOUT,
            self.client.cancel_workflow(&route.workflow_id),
        )
        .await
        .map_err(|_| format!("no answer from Temporal within {DISPATCH_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())
    }
}

/// `/health`'s `temporal` check.
#[derive(Debug, Clone)]
pub struct Health(pub TemporalClient);

#[async_trait::async_trait]
impl HealthCheck for Health {
    fn name(&self) -> &'static str {
        "temporal"
    }

    fn kind(&self) -> Option<String> {
        Some(self.0.settings().target.clone())
    }

    async fn check(&self) -> Result<(), String> {
        self.0.health().await.map_err(|e| e.to_string())
    }
}

/// The outbox: re-starts the workflows of jobs whose start was never acknowledged (Temporal was
/// down at submit, or the process died between insert and start). Starting is idempotent by
/// workflow id, so a job started twice still runs once.
pub async fn outbox_loop(
    repo: Arc<dyn Repo>,
    dispatcher: Dispatcher,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // Jobs younger than this are still in their submit request's hands.
        let before = Utc::now() - chrono::Duration::seconds(2);
        match repo.undispatched_temporal_jobs(before, 100).await {
            Ok(jobs) => {
                for job in jobs {
                    match dispatcher.dispatch(&job).await {
                        Ok(()) => {
                            tracing::info!(job_id = %job.job_id, "outbox: workflow started");
                            if let Err(e) = repo.mark_dispatched(job.job_id, Utc::now()).await {
                                tracing::warn!(error = %e, "outbox: recording the start failed");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(job_id = %job.job_id, error = %e, "outbox: starting the workflow failed; will retry");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "outbox: reading undispatched jobs failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}
