//! The subcommands.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use photo_api_http::auth::{key_sha256, new_key_record};
use photo_api_http::{ApiConfig, AppState, RouterConfig, WorkerHealth, WorkerState};
use photo_core::Scope;
use photo_db::{NewAuditEntry, Repo};
use photo_jobs::{SweepConfig, Worker, WorkerConfig};
use photo_storage::ObjectStore;
use tokio::sync::watch;

use crate::CHILD_SETTINGS_ENV;
use crate::config::{Config, Settings, WorkerMode};
use crate::{engine, wiring};

/// Installs the SIGTERM/SIGINT handlers now (so a signal that arrives during start-up is not
/// lost to the default action) and returns a future that resolves when one arrives.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn worker_config(cfg: &Config, name: &str) -> WorkerConfig {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    WorkerConfig {
        worker_id: format!("{host}:{}:{name}", std::process::id()),
        concurrency: cfg.worker_concurrency,
        lease: cfg.job_lease,
        heartbeat: cfg.job_lease / 3,
        poll_interval: cfg.poll_interval,
        backoff_base: cfg.retry_backoff,
        backoff_max: Duration::from_secs(300).max(cfg.retry_backoff),
        job_timeout: cfg.job_timeout,
        shutdown_grace: cfg.shutdown_grace,
        limits: cfg.limits(),
        max_source_bytes: cfg.max_upload_size,
        fetch: photo_jobs::fetch::FetchConfig {
            max_bytes: cfg.max_upload_size,
            timeout: cfg.source_url_timeout,
            max_redirects: cfg.source_url_max_redirects,
            allow: cfg.source_url_allow.clone(),
        },
    }
}

async fn ensure_admin_key(cfg: &Config, repo: &dyn Repo) -> anyhow::Result<()> {
    if cfg.api_key.is_some() || repo.count_api_keys().await? > 0 {
        return Ok(());
    }
    // The operator's key: every scope, including `global` (it manages every tenant's keys).
    let (k, rec) = new_key_record(
        photo_core::TenantId::default_tenant(),
        "admin (created on first start)".into(),
        &Scope::ALL,
        None,
        Utc::now(),
    );
    let detail = serde_json::json!({"name": rec.name, "scopes": rec.scopes, "expires_at": null});
    repo.create_api_key(
        &rec,
        &NewAuditEntry {
            at: rec.created_at,
            actor: "serve".into(),
            actor_tenant: None,
            action: "key.created".into(),
            target: Some(rec.key_id.clone()),
            detail,
        },
    )
    .await?;
    // Printed once, to stdout only; only its hash is stored.
    println!("Created an admin API key. It is shown only this once; store it now:");
    println!("API key: {}", k.key);
    Ok(())
}

/// `photo-api serve`.
pub async fn serve(cfg: Config, cli_settings: Settings) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let repo = wiring::open_repo(&cfg).await?;
    ensure_admin_key(&cfg, repo.as_ref()).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} (set PHOTO_API_LISTEN or --listen)",
                cfg.listen
            )
        })?;
    let addr = listener.local_addr()?;
    if let Some(files) = &cfg.tls {
        // Fail start-up, not the first handshake, on a bad certificate or key.
        crate::tls::check(files)?;
        crate::tls::load(files)?;
    }
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let public_url = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let signer = wiring::signer(&cfg)?;
    let store = wiring::open_store(&cfg, &public_url).await?;

    let temporal = engine::connect(&cfg).await?;
    let dispatcher = temporal.as_ref().map(|c| engine::Dispatcher {
        client: c.clone(),
        policy: engine::policy(&cfg),
    });

    let workers = WorkerHealth::default();
    let state = AppState {
        repo: repo.clone(),
        store: store.clone(),
        signer,
        cfg: Arc::new(ApiConfig {
            max_upload_size: cfg.max_upload_size,
            presign_expires: cfg.presign_expires,
            download_url_ttl: cfg.download_url_ttl,
            raw_ttl: cfg.raw_ttl,
            limits: cfg.limits(),
            max_attempts: cfg.max_attempts,
            bootstrap_key_sha256: cfg.api_key.as_deref().map(key_sha256),
            report_workers: true,
            files: photo_api_http::FilesConfig {
                max_file_size: cfg.files_max_size,
                max_files_per_request: cfg.files_max_per_request,
                max_tree_entries: cfg.files_max_tree_entries,
                gc_delay: cfg.files_gc_delay,
                max_url_ttl: cfg.files_max_url_ttl,
            },
            idempotency_ttl: cfg.idempotency_ttl,
            max_batch_size: cfg.max_batch_size,
            presets: cfg.presets.clone(),
        }),
        workers: workers.clone(),
        dispatcher: dispatcher
            .clone()
            .map(|d| Arc::new(d) as Arc<dyn photo_api_http::JobDispatcher>),
        checks: temporal
            .iter()
            .map(|c| Arc::new(engine::Health(c.clone())) as Arc<dyn photo_api_http::HealthCheck>)
            .chain(cfg.clamd.iter().map(|c| {
                Arc::new(photo_api_http::scan::ClamdHealth(c.clone()))
                    as Arc<dyn photo_api_http::HealthCheck>
            }))
            .collect(),
        scanner: cfg.clamd.clone(),
        jwt: cfg
            .jwt
            .clone()
            .map(|j| Arc::new(photo_api_http::jwt::JwtVerifier::new(j))),
        edge: Arc::new(photo_api_http::edge::Edge::new(cfg.edge.clone())),
    };
    // In the default mode jobs run in a supervised worker process: its metrics reach our
    // /metrics through a unix socket only it and we know.
    let worker_metrics = matches!(cfg.worker_mode, WorkerMode::Process).then(|| {
        Arc::new(crate::metrics::WorkerSocket::for_this_server())
            as Arc<dyn photo_api_http::metrics::MetricsSource>
    });
    let metrics_server = match cfg.metrics_listen {
        Some(at) => Some(
            crate::metrics::serve_http(
                at,
                photo_api_http::metrics_router(photo_api_http::metrics::MetricsState {
                    app: state.clone(),
                    extra: worker_metrics.clone(),
                }),
            )
            .await?,
        ),
        None => None,
    };
    let app = photo_api_http::app(
        state,
        RouterConfig {
            metrics_route: cfg.metrics_listen.is_none(),
            metrics_extra: worker_metrics,
            request_timeout: cfg.request_timeout,
            upload_body_limit: usize::try_from(cfg.max_upload_size)
                .unwrap_or(usize::MAX)
                .saturating_add(1 << 20),
            file_body_limit: usize::try_from(cfg.files_max_size)
                .unwrap_or(usize::MAX)
                .saturating_add(1 << 20),
            files_body_limit: usize::try_from(cfg.files_max_request_size).unwrap_or(usize::MAX),
        },
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let workers_task = match cfg.worker_mode {
        WorkerMode::Process => {
            let child_settings = child_settings(&cfg, cli_settings)?;
            Some(tokio::spawn(supervise(
                cfg.clone(),
                child_settings,
                workers.clone(),
                stop_rx.clone(),
            )))
        }
        WorkerMode::InProcess => {
            workers.set(WorkerState::Up);
            let (cfg, repo, store, stop) =
                (cfg.clone(), repo.clone(), store.clone(), stop_rx.clone());
            let temporal = temporal.clone();
            Some(tokio::task::spawn_local(async move {
                if let Err(e) = run_workers(&cfg, temporal, repo, store, "in-process", stop).await {
                    tracing::error!(error = %format!("{e:#}"), "in-process workers failed");
                }
            }))
        }
        WorkerMode::None => {
            workers.set(WorkerState::External);
            None
        }
    };
    let outbox =
        dispatcher.map(|d| tokio::spawn(engine::outbox_loop(repo.clone(), d, stop_rx.clone())));
    // Webhook deliveries run on their own task: a slow endpoint never holds up a job.
    let webhooks = tokio::spawn(photo_jobs::webhooks::delivery_loop(
        repo.clone(),
        photo_jobs::webhooks::WebhookConfig {
            retry_base: cfg.webhook_retry_base,
            retry_max: Duration::from_secs(3600).max(cfg.webhook_retry_base),
            max_attempts: cfg.webhook_max_attempts,
            timeout: cfg.webhook_timeout,
            poll: cfg.poll_interval.min(Duration::from_secs(1)),
            concurrency: 8,
            allow: cfg.source_url_allow.clone(),
        },
        stop_rx.clone(),
    ));
    let sweeper = tokio::spawn(sweep_loop(
        cfg.clone(),
        repo.clone(),
        store.clone(),
        stop_rx.clone(),
    ));

    println!("photo-api listening on {public_url} (docs: {public_url}/docs)");
    if cfg.api_key.is_some() {
        println!("Authenticate with 'Authorization: Bearer <the API_KEY you configured>'");
    } else {
        println!(
            "Authenticate with 'Authorization: Bearer <API key>' (the key printed on first start)"
        );
    }
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), worker_mode = ?cfg.worker_mode, "serving");

    let stop = stop_tx.clone();
    let on_shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests and jobs");
        let _ = stop.send(true);
    };
    match &cfg.tls {
        // With the peer address, for the per-address rate limit.
        None => axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(on_shutdown)
        .await
        .context("HTTP server failed")?,
        Some(files) => {
            crate::tls::serve(
                listener,
                app,
                files.clone(),
                on_shutdown,
                cfg.shutdown_grace,
            )
            .await?
        }
    }
    let _ = stop_tx.send(true);
    if let Some(t) = workers_task {
        let _ = t.await;
    }
    sweeper.abort();
    webhooks.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    let _ = std::fs::remove_file(crate::metrics::WorkerSocket::for_this_server().path());
    if let Some(o) = outbox {
        o.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Settings handed to the worker child: everything merged from flags and file, minus secrets it
/// does not need.
fn child_settings(_cfg: &Config, cli: Settings) -> anyhow::Result<String> {
    let mut s = cli;
    s.api_key = None;
    s.jwt_secret = None;
    s.worker_mode = None;
    s.metrics_listen = None;
    Ok(serde_json::to_string(&s)?)
}

#[expect(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
fn send_sigterm(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; pid is our own child's.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// Asks the kernel to SIGKILL the child the moment its parent dies, so an orphaned worker
/// never finishes (or starts) work after its server is gone, even for a few milliseconds.
#[cfg(target_os = "linux")]
#[expect(
    unsafe_code,
    reason = "pre_exec and prctl(2) have no safe wrapper in std"
)]
fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl, which is
    // async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut tokio::process::Command) {}

/// Starts the worker process and restarts it whenever it exits, with backoff, until stopped.
async fn supervise(
    cfg: Config,
    child_settings: String,
    health: WorkerHealth,
    mut stop: watch::Receiver<bool>,
) {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot find our own executable; no workers will run");
            return;
        }
    };
    let mut delay = Duration::from_millis(500);
    loop {
        if *stop.borrow() {
            return;
        }
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("worker")
            .env(CHILD_SETTINGS_ENV, &child_settings)
            .env("PHOTO_API_SUPERVISOR_PID", std::process::id().to_string())
            // Its metrics go to our /metrics through this socket, not a listener of its own.
            .env(
                crate::metrics::SOCKET_ENV,
                crate::metrics::WorkerSocket::for_this_server().path(),
            )
            .env_remove("PHOTO_API_METRICS_LISTEN")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        if let Some(c) = std::env::var_os("PHOTO_API_CONFIG") {
            cmd.env("PHOTO_API_CONFIG", c);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "starting the worker process failed");
                health.set(WorkerState::Restarting);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        health.set(WorkerState::Up);
        let pid = child.id();
        tracing::info!(pid, "worker process started");
        let started = std::time::Instant::now();
        tokio::select! {
            status = child.wait() => {
                health.set(WorkerState::Restarting);
                tracing::error!(?status, "worker process exited; restarting it (its running jobs are retried when their leases expire)");
                if started.elapsed() > Duration::from_secs(60) {
                    delay = Duration::from_millis(500);
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            _ = stop.changed() => {
                if let Some(pid) = pid {
                    send_sigterm(pid);
                }
                let grace = cfg.shutdown_grace + Duration::from_secs(5);
                if tokio::time::timeout(grace, child.wait()).await.is_err() {
                    tracing::warn!("worker process did not stop in time; killing it");
                    let _ = child.kill().await;
                }
                return;
            }
        }
    }
}

async fn sweep_loop(
    cfg: Config,
    repo: Arc<dyn Repo>,
    store: Arc<dyn ObjectStore>,
    mut stop: watch::Receiver<bool>,
) {
    let sc = SweepConfig {
        staging_max_age: chrono::Duration::from_std(cfg.staging_max_age)
            .unwrap_or(chrono::Duration::MAX),
        batch: 500,
        job_ttl: cfg
            .job_ttl
            .map(|t| chrono::Duration::from_std(t).unwrap_or(chrono::Duration::MAX)),
    };
    loop {
        match photo_jobs::sweep_once(repo.as_ref(), store.as_ref(), &sc, Utc::now()).await {
            Ok(r)
                if r.uploads_expired
                    + r.staging_removed
                    + r.file_objects_removed
                    + r.jobs_expired
                    > 0 =>
            {
                tracing::info!(
                    uploads_expired = r.uploads_expired,
                    jobs_expired = r.jobs_expired,
                    staging_removed = r.staging_removed,
                    file_objects_removed = r.file_objects_removed,
                    "sweep done"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweep failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.sweep_interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// `photo-api worker`.
pub async fn worker(cfg: Config) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let repo = wiring::open_repo(&cfg).await?;
    let store = wiring::open_store(&cfg, "http://worker.invalid").await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(parent) = std::env::var("PHOTO_API_SUPERVISOR_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        // If the supervising server dies (even by SIGKILL), stop at once: its replacement
        // starts its own worker, and leases hand our jobs over. Compared with the pid the
        // server passed, so a server that died before we started is noticed too.
        tokio::spawn(async move {
            loop {
                if std::os::unix::process::parent_id() != parent {
                    tracing::warn!("supervising server is gone; exiting");
                    std::process::exit(70);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    // Metrics: to the supervising server's socket, or on a listener of our own.
    let _metrics = match (
        std::env::var_os(crate::metrics::SOCKET_ENV),
        cfg.metrics_listen,
    ) {
        (Some(path), _) => Some(crate::metrics::serve_socket(std::path::PathBuf::from(
            path,
        ))?),
        (None, Some(at)) => {
            Some(crate::metrics::serve_http(at, crate::metrics::worker_router()).await?)
        }
        (None, None) => None,
    };
    // Fails start-up when Temporal is configured but cannot be reached.
    let temporal = engine::connect(&cfg).await?;
    let run = run_workers(&cfg, temporal, repo, store, "w", stop_rx);
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => return r,
        () = shutdown => {}
    }
    let _ = stop_tx.send(true);
    run.await
}

/// Runs this process's workers until `stop` turns true: the Temporal worker (workflows and
/// activities on TEMPORAL_TASK_QUEUE) when Temporal is configured, else the SQL claim loop.
/// Both run jobs through the same [`Worker::run_job`].
async fn run_workers(
    cfg: &Config,
    temporal: Option<photo_temporal::TemporalClient>,
    repo: Arc<dyn Repo>,
    store: Arc<dyn ObjectStore>,
    name: &str,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let wc = worker_config(cfg, name);
    let Some(client) = temporal else {
        Worker::new(repo, store, wc).run(stop).await;
        return Ok(());
    };
    let (hard_stop_tx, hard_stop) = watch::channel(false);
    let settings = photo_temporal::WorkerSettings {
        concurrency: wc.concurrency,
        shutdown_grace: wc.shutdown_grace,
        identity: wc.worker_id.clone(),
    };
    let activities = photo_temporal::JobActivities::new(
        Worker::new(repo.clone(), store, wc.clone()),
        repo,
        wc.worker_id.clone(),
        wc.lease,
        hard_stop,
    );
    photo_temporal::run_worker(&client, activities, settings, stop, hard_stop_tx)
        .await
        .context("running the Temporal worker")
}

/// `photo-api migrate`.
pub async fn migrate(cfg: Config, down: Option<usize>) -> anyhow::Result<()> {
    wiring::ensure_data_dir(&cfg)?;
    let repo = photo_db::connect(&cfg.database_url, &cfg.db_options())
        .await
        .with_context(|| {
            format!(
                "connecting to the database {}",
                wiring::redact_url(&cfg.database_url)
            )
        })?;
    match down {
        Some(n) => println!("reverted {} migration(s)", repo.migrate_down(n).await?),
        None => println!(
            "database is up to date ({} migration(s) applied now)",
            repo.migrate().await?
        ),
    }
    Ok(())
}

/// `photo-api sweep`.
pub async fn sweep(cfg: Config) -> anyhow::Result<()> {
    let repo = wiring::open_repo(&cfg).await?;
    let store = wiring::open_store(&cfg, "http://sweep.invalid").await?;
    let r = photo_jobs::sweep_once(
        repo.as_ref(),
        store.as_ref(),
        &SweepConfig {
            staging_max_age: chrono::Duration::from_std(cfg.staging_max_age)
                .unwrap_or(chrono::Duration::MAX),
            batch: 500,
            job_ttl: cfg
                .job_ttl
                .map(|t| chrono::Duration::from_std(t).unwrap_or(chrono::Duration::MAX)),
        },
        Utc::now(),
    )
    .await?;
    println!(
        "expired {} upload(s), removed {} staging file(s) and {} object(s) of deleted files, deleted {} expired job(s)",
        r.uploads_expired, r.staging_removed, r.file_objects_removed, r.jobs_expired
    );
    Ok(())
}

/// `photo-api setup`: creates the S3 buckets if missing and applies the design's settings
/// (public access blocked, versioning on processed, lifecycle: raw uploads expire after 2 days,
/// incomplete multipart uploads are aborted after 7), then checks both buckets.
pub async fn setup(cfg: Config) -> anyhow::Result<()> {
    if cfg.s3.is_none() {
        let store = wiring::local_store(&cfg, "http://setup.invalid").await?;
        store.health().await?;
        println!(
            "local storage ready under {} (set S3_BUCKET_RAW and S3_BUCKET_PROCESSED for S3)",
            cfg.data_dir.join("objects").display()
        );
        return Ok(());
    }
    let store = wiring::s3_store(&cfg).await?;
    for line in store.setup().await? {
        println!("{line}");
    }
    store
        .health()
        .await
        .context("checking the buckets after setup")?;
    println!("both buckets are reachable");
    Ok(())
}
