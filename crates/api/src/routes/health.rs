//! Liveness and readiness.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::state::{AppState, WorkerState};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// One dependency's state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// `up`, `down`, `restarting`, `starting` or `external`.
    pub status: String,
    /// Whether the service is unready without it.
    pub required: bool,
    /// Adapter name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Error when down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The readiness report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    /// `ok` when every required dependency is up, else `unavailable`.
    pub status: String,
    /// Per dependency.
    pub checks: BTreeMap<String, Check>,
}

/// Readiness: each dependency's status; 503 when a required one is down.
#[utoipa::path(get, path = "/health", tag = "health", responses(
    (status = 200, description = "Every required dependency is up", body = HealthReport),
    (status = 503, description = "A required dependency is down", body = HealthReport)))]
pub async fn health(State(st): State<AppState>) -> (StatusCode, Json<HealthReport>) {
    let timeout = Duration::from_secs(3);
    let db = tokio::time::timeout(timeout, st.repo.health()).await;
    let store = tokio::time::timeout(timeout, st.store.health()).await;
    let mut checks = BTreeMap::new();
    let check = |ok: Result<(), String>, kind: Option<&str>| Check {
        status: if ok.is_ok() { "up" } else { "down" }.into(),
        required: true,
        kind: kind.map(str::to_owned),
        error: ok.err(),
    };
    let flat = |r: Result<Result<(), String>, tokio::time::error::Elapsed>| {
        r.unwrap_or_else(|_| Err("timed out".into()))
    };
    checks.insert(
        "database".into(),
        check(flat(db.map(|r| r.map_err(|e| e.to_string()))), None),
    );
    checks.insert(
        "storage".into(),
        check(
            flat(store.map(|r| r.map_err(|e| e.to_string()))),
            Some(st.store.kind()),
        ),
    );
    for c in &st.checks {
        let r = tokio::time::timeout(timeout, c.check()).await;
        let mut entry = check(flat(r), c.kind().as_deref());
        entry.required = c.required();
        checks.insert(c.name().into(), entry);
    }
    if st.cfg.report_workers {
        let s = match st.workers.get() {
            WorkerState::Up => "up",
            WorkerState::Restarting => "restarting",
            WorkerState::Starting => "starting",
            WorkerState::External => "external",
        };
        checks.insert(
            "workers".into(),
            Check {
                status: s.into(),
                required: false,
                kind: None,
                error: None,
            },
        );
    }
    let ok = checks.values().all(|c| !c.required || c.status == "up");
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(HealthReport {
            status: if ok { "ok" } else { "unavailable" }.into(),
            checks,
        }),
    )
}
