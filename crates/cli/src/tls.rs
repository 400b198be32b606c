//! Optional TLS termination for single-host deployments: rustls with a certificate chain and key
//! from PEM files, reloaded on SIGHUP (a bad new pair is logged and the old one kept). The port
//! speaks TLS only: a plain-HTTP request fails the handshake and the connection is closed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tower::ServiceExt;

/// The certificate chain and private key files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Reads the files into a rustls server configuration (TLS 1.2 and 1.3, HTTP/1.1).
pub fn load(files: &TlsFiles) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and the key do not form a usable pair")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn reload(files: &TlsFiles, acceptor: &RwLock<TlsAcceptor>) {
    match load(files) {
        Ok(cfg) => {
            *acceptor.write().unwrap_or_else(|e| e.into_inner()) = TlsAcceptor::from(cfg);
            tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "TLS reload failed; keeping the previous certificate");
        }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then lets open connections
/// finish (at most `grace`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    files: TlsFiles,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) -> anyhow::Result<()> {
    let acceptor = Arc::new(RwLock::new(TlsAcceptor::from(load(&files)?)));
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = hup.recv() => reload(&files, &acceptor),
            accepted = listener.accept() => {
                let (sock, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acc = acceptor.read().unwrap_or_else(|e| e.into_inner()).clone();
                let app = app.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    // A client that never completes the handshake (or speaks plain HTTP) is dropped.
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acc.accept(sock)).await {
                        Ok(Ok(t)) => t,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let mut req = req.map(axum::body::Body::new);
                        req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                        app.clone().oneshot(req)
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(tls), svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "TLS connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open TLS connections did not finish in time");
    }
    Ok(())
}

/// Checks both files exist (start-up message names the setting).
pub fn check(files: &TlsFiles) -> anyhow::Result<()> {
    for (p, name) in [
        (&files.cert, "PHOTO_API_TLS_CERT"),
        (&files.key, "PHOTO_API_TLS_KEY"),
    ] {
        if !Path::new(p).is_file() {
            anyhow::bail!("{name}: {} is not a readable file", p.display());
        }
    }
    Ok(())
}
