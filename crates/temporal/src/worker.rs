//! The Temporal worker of `photo-api worker`: polls the task queue for `photo.job` workflow tasks
//! and `photo.process_job` / `photo.mark_dead` activity tasks.

use std::time::Duration;

use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio::sync::watch;

use crate::{JobActivities, JobWorkflow, TemporalClient, TemporalError};

/// Settings of the worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Activities (jobs) run at once.
    pub concurrency: usize,
    /// How long shutdown waits for running activities.
    pub shutdown_grace: Duration,
    /// Recorded as the worker's identity in Temporal.
    pub identity: String,
}

/// Runs the worker until `shutdown` turns true, then stops polling and waits up to the grace
/// period for running attempts; `hard_stop` (given to [`JobActivities`]) is raised after it so
/// attempts still running hand their jobs back.
pub async fn run_worker(
    client: &TemporalClient,
    activities: JobActivities,
    settings: WorkerSettings,
    mut shutdown: watch::Receiver<bool>,
    hard_stop: watch::Sender<bool>,
) -> Result<(), TemporalError> {
    let runtime = Runtime::from_current_tokio(Default::default())
        .map_err(|e| TemporalError::Config(format!("starting the Temporal runtime: {e}")))?;
    let n = settings.concurrency.max(1);
    let tuner = TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(n.max(2) * 2))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(n))
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(1))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
        .build();
    let task_queue = client.settings().task_queue.clone();
    let options = WorkerOptions::new(task_queue.clone())
        .register_workflow::<JobWorkflow>()
        .map_err(|e| TemporalError::Config(format!("registering the workflow: {e}")))?
        .register_activities(activities)
        .tuner(tuner)
        .client_identity_override(settings.identity.clone())
        .build();
    let mut worker = Worker::new(&runtime, client.sdk_client(), options)
        .map_err(|e| TemporalError::Config(format!("creating the Temporal worker: {e}")))?;
    let stop = worker.shutdown_handle();
    tracing::info!(task_queue = %task_queue, concurrency = n, "Temporal worker started");
    let grace = settings.shutdown_grace;
    let watcher = async move {
        let _ = shutdown.wait_for(|s| *s).await;
        tracing::info!("Temporal worker stopping; waiting for running jobs");
        stop();
        tokio::time::sleep(grace).await;
        let _ = hard_stop.send(true);
        // Run until the worker itself is done.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        r = worker.run() => r.map_err(|e| TemporalError::Rpc(format!("the Temporal worker failed: {e}")))?,
        () = watcher => {}
    }
    tracing::info!("Temporal worker stopped");
    Ok(())
}
