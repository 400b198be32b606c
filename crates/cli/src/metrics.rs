//! How worker processes publish their metrics: to the server that supervises them over a
//! unix socket (merged into its `/metrics` as `component="worker"`), or on a listener of their
//! own (`PHOTO_API_METRICS_LISTEN`) when they run on their own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::header;
use axum::routing::get;
use photo_core::metrics::{Family, render};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Set by `serve` on its worker process: the socket the worker answers metrics on.
pub const SOCKET_ENV: &str = "PHOTO_API_METRICS_SOCKET";
/// Largest answer read from a worker.
const MAX_ANSWER: u64 = 16 << 20;

/// The supervised worker's metrics socket, as `serve` sees it.
#[derive(Debug, Clone)]
pub struct WorkerSocket(PathBuf);

impl WorkerSocket {
    /// The socket of this server's worker (one path per server process).
    pub fn for_this_server() -> Self {
        WorkerSocket(
            std::env::temp_dir().join(format!("photo-api-{}-worker.sock", std::process::id())),
        )
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    async fn read(&self) -> anyhow::Result<Vec<Family>> {
        let mut s = tokio::net::UnixStream::connect(&self.0).await?;
        let mut buf = Vec::new();
        (&mut s).take(MAX_ANSWER).read_to_end(&mut buf).await?;
        Ok(serde_json::from_slice(&buf)?)
    }
}

#[async_trait::async_trait]
impl photo_api_http::metrics::MetricsSource for WorkerSocket {
    async fn families(&self) -> Vec<(&'static str, Vec<Family>)> {
        match tokio::time::timeout(Duration::from_secs(2), self.read()).await {
            Ok(Ok(f)) => vec![("worker", f)],
            // Restarting, or not started yet: its series are missing from this scrape only.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "worker metrics unavailable");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }
}

/// Worker side: answers every connection on `path` with this process's families (JSON), then
/// closes it. A stale socket file (from a killed worker) is replaced; the server removes the
/// file when it stops.
pub fn serve_socket(path: PathBuf) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("binding the metrics socket {}", path.display()))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let body = serde_json::to_vec(&photo_api_http::metrics::worker_families())
                    .unwrap_or_default();
                let _ = tokio::time::timeout(Duration::from_secs(5), conn.write_all(&body)).await;
                let _ = conn.shutdown().await;
            });
        }
    }))
}

/// A standalone worker's `/metrics`.
pub fn worker_router() -> Router {
    Router::new().route(
        "/metrics",
        get(|| async {
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                render(&[("worker", photo_api_http::metrics::worker_families())]),
            )
        }),
    )
}

/// Serves `router` (metrics only) on a listener of its own.
pub async fn serve_http(
    at: SocketAddr,
    router: Router,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .with_context(|| format!("listening for metrics on {at} (PHOTO_API_METRICS_LISTEN)"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    }))
}
