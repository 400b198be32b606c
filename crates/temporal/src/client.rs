//! Connecting to Temporal and starting job workflows.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use photo_core::JobId;
use photo_db::Job;
use temporalio_client::tonic::Code;
use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, TlsOptions, Url,
    WorkflowCancelOptions, WorkflowIdReusePolicy, WorkflowStartOptions,
    errors::{WorkflowInteractionError, WorkflowStartError},
};
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeNamespaceRequest;

use crate::workflow::{JobPolicy, JobWorkflow, JobWorkflowInput};

/// Client certificate and key files (PEM) for mTLS, as Temporal Cloud issues them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The client certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// Where Temporal is and how to authenticate.
#[derive(Clone, PartialEq, Eq)]
pub struct TemporalSettings {
    /// `host:port` (or a URL) of the frontend, e.g. `127.0.0.1:7233` or
    /// `ns.acct.tmprl.cloud:7233`.
    pub target: String,
    /// The namespace.
    pub namespace: String,
    /// The task queue of job workflows and their activities.
    pub task_queue: String,
    /// mTLS client certificate and key.
    pub tls: Option<TlsFiles>,
    /// A CA bundle to verify the server with (default: the system's roots).
    pub server_ca: Option<PathBuf>,
    /// The name to verify the server's certificate against (default: the target's host).
    pub server_name: Option<String>,
    /// An API key (Temporal Cloud); turns TLS on.
    pub api_key: Option<String>,
}

impl std::fmt::Debug for TemporalSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalSettings")
            .field("target", &self.target)
            .field("namespace", &self.namespace)
            .field("task_queue", &self.task_queue)
            .field("tls", &self.tls)
            .field("server_ca", &self.server_ca)
            .field("server_name", &self.server_name)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
}

impl TemporalSettings {
    /// Whether the connection uses TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
            || self.server_ca.is_some()
            || self.server_name.is_some()
            || self.api_key.is_some()
            || self.target.starts_with("https://")
    }

    fn url(&self) -> Result<Url, TemporalError> {
        let t = self.target.trim();
        let with_scheme = if t.contains("://") {
            t.to_owned()
        } else if self.uses_tls() {
            format!("https://{t}")
        } else {
            format!("http://{t}")
        };
        Url::from_str(&with_scheme)
            .map_err(|e| TemporalError::Config(format!("TEMPORAL_TARGET {t:?}: {e}")))
    }
}

/// Temporal failures.
#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    /// The settings are unusable (bad target, unreadable certificate).
    #[error("{0}")]
    Config(String),
    /// The server could not be reached or refused us.
    #[error("cannot reach Temporal at {target} (namespace {namespace}): {message}")]
    Unreachable {
        /// Target.
        target: String,
        /// Namespace.
        namespace: String,
        /// Why.
        message: String,
    },
    /// A request failed.
    #[error("Temporal: {0}")]
    Rpc(String),
}

/// A started (or already running) workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedRun {
    /// The workflow id.
    pub workflow_id: String,
    /// Its run id.
    pub run_id: String,
    /// True when this start found the workflow already there (a duplicate start).
    pub existing: bool,
}

/// A connected Temporal client for job workflows.
#[derive(Clone)]
pub struct TemporalClient {
    client: Client,
    settings: TemporalSettings,
}

impl std::fmt::Debug for TemporalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, TemporalError> {
    std::fs::read(path)
        .map_err(|e| TemporalError::Config(format!("reading the {what} {}: {e}", path.display())))
}

impl TemporalClient {
    /// Connects and checks that the namespace exists, so a wrong target, certificate or
    /// namespace fails here with a clear message.
    pub async fn connect(settings: TemporalSettings) -> Result<Self, TemporalError> {
        let url = settings.url()?;
        let tls = if settings.tls.is_some()
            || settings.server_ca.is_some()
            || settings.server_name.is_some()
        {
            let client_tls = match &settings.tls {
                Some(f) => Some(
                    ClientTlsOptions::builder()
                        .client_cert(read(&f.cert, "client certificate")?)
                        .client_private_key(read(&f.key, "client key")?)
                        .build(),
                ),
                None => None,
            };
            let ca = match &settings.server_ca {
                Some(p) => Some(read(p, "server CA")?),
                None => None,
            };
            Some(
                TlsOptions::builder()
                    .maybe_server_root_ca_cert(ca)
                    .maybe_domain(settings.server_name.clone())
                    .maybe_client_tls_options(client_tls)
                    .build(),
            )
        } else {
            None
        };
        let unreachable = |message: String| TemporalError::Unreachable {
            target: settings.target.clone(),
            namespace: settings.namespace.clone(),
            message,
        };
        let opts = ConnectionOptions::new(url)
            .identity(format!("photo-api@{}", std::process::id()))
            .maybe_tls_options(tls)
            .maybe_api_key(settings.api_key.clone())
            .connect_timeout(Duration::from_secs(10))
            .build();
        let connection = Connection::connect(opts)
            .await
            .map_err(|e| unreachable(format!("{e:#}")))?;
        let client = Client::new(
            connection,
            ClientOptions::new(settings.namespace.clone()).build(),
        )
        .map_err(|e| TemporalError::Config(e.to_string()))?;
        let checked = Self {
            client,
            settings: settings.clone(),
        };
        checked
            .health()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(checked)
    }

    /// The settings it was connected with.
    pub fn settings(&self) -> &TemporalSettings {
        &self.settings
    }

    /// The SDK client (for the worker).
    pub fn sdk_client(&self) -> Client {
        self.client.clone()
    }

    /// Checks the server answers for our namespace.
    pub async fn health(&self) -> Result<(), TemporalError> {
        let mut svc = self.client.connection().workflow_service();
        let req = DescribeNamespaceRequest {
            namespace: self.settings.namespace.clone(),
            ..Default::default()
        };
        let mut request = temporalio_client::tonic::Request::new(req);
        request.set_timeout(Duration::from_secs(3));
        svc.describe_namespace(request)
            .await
            .map(|_| ())
            .map_err(|s| match s.code() {
                Code::NotFound => TemporalError::Rpc(format!(
                    "namespace {:?} does not exist",
                    self.settings.namespace
                )),
                _ => TemporalError::Rpc(format!("{}: {}", s.code(), s.message())),
            })
    }

    /// Starts the workflow of `job` on the task queue recorded with it. Idempotent: the
    /// workflow id is derived from the job id and reuse is refused, so a duplicate start —
    /// of a running or of a finished workflow — answers with the existing run.
    pub async fn start_job_workflow(
        &self,
        job: &Job,
        policy: &JobPolicy,
    ) -> Result<StartedRun, TemporalError> {
        let task_queue = job.temporal.as_ref().map(|t| t.task_queue.as_str());
        let workflow_id = job.temporal.as_ref().map(|t| t.workflow_id.as_str());
        self.start_workflow_with_id(
            job.job_id,
            workflow_id,
            job.max_attempts,
            task_queue,
            policy,
        )
        .await
    }

    /// Requests cancellation of a workflow (the job's recorded one). Cancelling a workflow that
    /// already ended is not an error: the job row, not the workflow, is the source of truth.
    pub async fn cancel_workflow(&self, workflow_id: &str) -> Result<(), TemporalError> {
        let handle = self
            .client
            .get_workflow_handle::<JobWorkflow>(workflow_id.to_owned());
        match handle
            .cancel(
                WorkflowCancelOptions::builder()
                    .reason("cancelled through POST /jobs/{job_id}/cancel")
                    .build(),
            )
            .await
        {
            // NotFound: never started (still in the outbox) or already closed.
            Ok(()) | Err(WorkflowInteractionError::NotFound(_)) => Ok(()),
            Err(e) => Err(TemporalError::Rpc(e.to_string())),
        }
    }

    /// [`TemporalClient::start_job_workflow`] from the job's id and attempt budget; the task
    /// queue defaults to the configured one.
    pub async fn start_workflow_for(
        &self,
        job_id: JobId,
        max_attempts: u32,
        task_queue: Option<&str>,
        policy: &JobPolicy,
    ) -> Result<StartedRun, TemporalError> {
        self.start_workflow_with_id(job_id, None, max_attempts, task_queue, policy)
            .await
    }

    /// [`TemporalClient::start_workflow_for`] under a given workflow id (a retried job runs a
    /// new workflow, `photo-job-{job_id}-r{n}`); `None` is the job's first one.
    pub async fn start_workflow_with_id(
        &self,
        job_id: JobId,
        workflow_id: Option<&str>,
        max_attempts: u32,
        task_queue: Option<&str>,
        policy: &JobPolicy,
    ) -> Result<StartedRun, TemporalError> {
        let workflow_id = workflow_id.map_or_else(|| crate::workflow_id(job_id), str::to_owned);
        let task_queue = task_queue.map_or_else(|| self.settings.task_queue.clone(), str::to_owned);
        let input = JobWorkflowInput::new(job_id.to_string(), max_attempts, policy);
        let opts = WorkflowStartOptions::new(task_queue, workflow_id.clone())
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .build();
        match self
            .client
            .start_workflow(JobWorkflow::run, input, opts)
            .await
        {
            Ok(h) => Ok(StartedRun {
                workflow_id,
                run_id: h.run_id().unwrap_or_default().to_owned(),
                existing: false,
            }),
            Err(WorkflowStartError::AlreadyStarted { run_id, .. }) => Ok(StartedRun {
                workflow_id,
                run_id: run_id.unwrap_or_default(),
                existing: true,
            }),
            Err(e) => Err(TemporalError::Rpc(e.to_string())),
        }
    }
}
