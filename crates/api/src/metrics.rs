//! `GET /metrics` (Prometheus text format) and the HTTP middleware that records request
//! counts, latencies and in-flight requests by route template.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use photo_core::metrics::{Family, FamilyBuilder, intern, metrics, render, status_class};
use photo_core::{JobStatus, JobType};

use crate::state::AppState;

/// The route template a request matched, left in the response for [`track`].
#[derive(Debug, Clone, Copy)]
struct RouteTemplate(&'static str);

/// Families from other processes merged into this one's `/metrics`: the worker process that
/// `serve` supervises hands its families over (see the binary).
#[async_trait::async_trait]
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// `(component, families)` pairs; empty when the process cannot be reached.
    async fn families(&self) -> Vec<(&'static str, Vec<Family>)>;
}

/// Route layer: counts the request in flight on its route template (`/jobs/{job_id}`, never
/// the concrete path), and notes the template in the response for [`track`].
pub async fn tag_route(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let route = matched.map_or("unmatched", |m| intern(m.as_str()));
    let _in_flight = InFlight::start(route);
    let mut res = next.run(req).await;
    res.extensions_mut().insert(RouteTemplate(route));
    res
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// One request in flight on a route, for as long as its handler runs.
struct InFlight(&'static str);

impl InFlight {
    fn start(route: &'static str) -> Self {
        metrics().http_in_flight.add([route], 1.0);
        InFlight(route)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics().http_in_flight.add([self.0], -1.0);
    }
}

/// Outermost middleware: counts every request (including ones the edge refuses) by route
/// template, method and status class, and times it until the response head. (In-flight
/// requests are counted per route by [`tag_route`], once routed.)
pub async fn track(req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let start = Instant::now();
    let res = next.run(req).await;
    let route = res
        .extensions()
        .get::<RouteTemplate>()
        .map_or("unmatched", |r| r.0);
    let labels = [route, method, status_class(res.status().as_u16())];
    let m = metrics();
    m.http_requests.inc(labels);
    m.http_duration
        .observe(labels, start.elapsed().as_secs_f64());
    res
}

/// Where `/metrics` gets what it shows.
#[derive(Debug, Clone)]
pub struct MetricsState {
    /// The application (database, storage, health checks).
    pub app: AppState,
    /// Other processes' families (the supervised worker).
    pub extra: Option<Arc<dyn MetricsSource>>,
}

/// `GET /metrics`: this process's metrics, the queue read from the database, the dependency
/// checks of `/health`, process statistics, and the supervised worker's metrics.
pub async fn scrape(State(ms): State<MetricsState>) -> Response {
    let st = &ms.app;
    let mut own = metrics().families();
    own.extend(queue_families(st).await);
    own.push(dependency_family(st).await);
    own.extend(process_families());
    own.push(build_info());
    let mut sources = vec![("api", own)];
    if let Some(extra) = &ms.extra {
        sources.extend(extra.families().await);
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&sources),
    )
        .into_response()
}

/// The families a worker process exposes: its in-process metrics plus process statistics.
pub fn worker_families() -> Vec<Family> {
    let mut f = metrics().families();
    f.extend(process_families());
    f.push(build_info());
    f
}

fn build_info() -> Family {
    FamilyBuilder::gauge(
        "photo_api_build_info",
        "Always 1; the version of the running binary.",
    )
    .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0)
    .build()
}

const QUEUED: [JobStatus; 2] = [JobStatus::Submitted, JobStatus::Retrying];

async fn queue_families(st: &AppState) -> Vec<Family> {
    let stats = match tokio::time::timeout(std::time::Duration::from_secs(3), st.repo.queue_stats())
        .await
    {
        Ok(Ok(s)) => s,
        // The database is down: the dependency gauge says so; no queue series this scrape.
        _ => return Vec::new(),
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let type_label = |t: &str| JobType::parse(t).map_or("other", JobType::as_str);
    let mut jobs = FamilyBuilder::gauge(
        "photo_api_jobs",
        "Jobs waiting (submitted, retrying), running (started) or dead, by job type and status.",
    );
    let mut dead = 0u64;
    let mut oldest: std::collections::BTreeMap<&'static str, f64> =
        JobType::ALL.iter().map(|t| (t.as_str(), 0.0)).collect();
    for s in &stats {
        let t = type_label(&s.job_type);
        jobs = jobs.sample(
            &[("job_type", t), ("status", s.status.as_str())],
            s.count as f64,
        );
        if s.status == JobStatus::Dead {
            dead += s.count;
        }
        if QUEUED.contains(&s.status)
            && let Some(run_at) = s.oldest_run_at_ms
        {
            let age = ((now_ms - run_at).max(0) as f64) / 1000.0;
            let e = oldest.entry(t).or_insert(0.0);
            *e = e.max(age);
        }
    }
    let mut age = FamilyBuilder::gauge(
        "photo_api_jobs_oldest_queued_age_seconds",
        "How long the oldest job that is due to run has been waiting, by job type (0 when none).",
    );
    for (t, v) in oldest {
        age = age.sample(&[("job_type", t)], v);
    }
    vec![
        jobs.build(),
        age.build(),
        FamilyBuilder::gauge(
            "photo_api_jobs_dead_letter",
            "Jobs in the dead-letter state (see GET /jobs?status=dead).",
        )
        .sample(&[], dead as f64)
        .build(),
    ]
}

async fn dependency_family(st: &AppState) -> Family {
    let (_, report) = crate::routes::health::health(State(st.clone())).await;
    let mut f = FamilyBuilder::gauge(
        "photo_api_dependency_up",
        "1 when a dependency of GET /health is up, 0 when it is down, by dependency.",
    );
    for (name, check) in &report.0.checks {
        if check.status == "external" {
            continue; // workers run elsewhere; they report on their own /metrics
        }
        let up = if check.status == "up" { 1.0 } else { 0.0 };
        f = f.sample(&[("dependency", intern(name))], up);
    }
    f.build()
}

/// Process statistics from `/proc` (Linux; elsewhere none).
fn process_families() -> Vec<Family> {
    // USER_HZ: the unit of the times in /proc/<pid>/stat; 100 on every Linux ABI.
    const TICKS: f64 = 100.0;
    let mut out = Vec::new();
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return out;
    };
    // Fields after the command name (which may contain spaces), from field 3 on.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return out;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime is field 14, stime 15, starttime 22, vsize 23, rss 24 (1-based; f[0] is field 3).
    let cpu = (num(11) + num(12)) / TICKS;
    let vsize = num(20);
    let page = 4096.0;
    let rss = num(21) * page;
    out.push(
        FamilyBuilder::counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        )
        .sample(&[], cpu)
        .build(),
    );
    out.push(
        FamilyBuilder::gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )
        .sample(&[], rss)
        .build(),
    );
    out.push(
        FamilyBuilder::gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        )
        .sample(&[], vsize)
        .build(),
    );
    if let Some(boot) = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    }) {
        out.push(
            FamilyBuilder::gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            )
            .sample(&[], boot + num(19) / TICKS)
            .build(),
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        out.push(
            FamilyBuilder::gauge("process_open_fds", "Number of open file descriptors.")
                .sample(&[], dir.count() as f64)
                .build(),
        );
    }
    if let Some(max) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        })
    {
        out.push(
            FamilyBuilder::gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            )
            .sample(&[], max)
            .build(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stats_are_read() {
        let names: Vec<String> = process_families().into_iter().map(|f| f.name).collect();
        for n in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
        let rss = process_families()
            .into_iter()
            .find(|f| f.name == "process_resident_memory_bytes")
            .map(|f| f.samples[0].value)
            .unwrap_or(0.0);
        assert!(rss > 1e6, "RSS {rss}");
    }
}
