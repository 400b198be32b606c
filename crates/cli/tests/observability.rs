//! Metrics, traces and logs of the real binary (issue 9): a scrape after a workload checked by
//! `promtool check metrics`; every metric the alert rules and the dashboard use present in it;
//! labels that stay fixed while 1,000 different files are uploaded; a job that carries the
//! trace of the request that submitted it, exported over OTLP (protobuf and JSON) to a
//! collector in the test; JSON logs with request id, tenant and job id and no secrets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Opts, Server, jpeg};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// promtool: from PATH, or where Debian's `prometheus` package puts it (scripts/promtool.sh
/// installs it; the test suite's script runs that first).
fn promtool() -> PathBuf {
    for p in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join("promtool"))
        .chain([PathBuf::from("/usr/bin/promtool")])
    {
        if p.is_file() {
            return p;
        }
    }
    panic!("promtool not found: run scripts/promtool.sh --install-only (scripts/test.sh does)");
}

async fn scrape(s: &Server) -> String {
    // No credentials: /metrics is open, like /health.
    let r = reqwest::get(s.url("/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    r.text().await.unwrap()
}

/// `name{labels}` → value, for every sample line.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

fn value(text: &str, series: &str) -> f64 {
    samples(text).get(series).copied().unwrap_or_else(|| {
        panic!("no series {series} in the scrape:\n{text}");
    })
}

fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect()
}

async fn upload_file(s: &Server, name: &str, bytes: Vec<u8>) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
    let form = reqwest::multipart::Form::new().part("file", part);
    s.http
        .post(s.url("/files/upload?folder=albums"))
        .bearer_auth(&s.key)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// Metric family names the alert rules and the dashboard refer to (deploy/), with histogram
/// suffixes folded back to the family.
fn names_used_in_deploy() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut files = vec![repo_root().join("deploy/grafana/photo-api.json")];
    for e in std::fs::read_dir(repo_root().join("deploy/prometheus")).unwrap() {
        files.push(e.unwrap().path());
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let b = text.as_bytes();
        let mut i = 0;
        while let Some(off) = text[i..].find("photo_api_") {
            let start = i + off;
            let mut end = start;
            while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                end += 1;
            }
            // Recording rules (`component:photo_api_…:rate5m`) are ours, not exposed names.
            let preceded = start > 0
                && (b[start - 1].is_ascii_alphanumeric()
                    || b[start - 1] == b'_'
                    || b[start - 1] == b':');
            let followed = end < b.len() && b[end] == b':';
            let name = &text[start..end];
            if !preceded && !followed {
                let fam = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                out.insert(fam.to_owned());
            }
            i = end.max(start + 1);
        }
    }
    out
}

#[tokio::test]
async fn a_scrape_after_a_workload_passes_promtool_and_has_every_metric_the_alerts_use() {
    // The default mode: jobs run in a supervised worker process, whose metrics the server's
    // /metrics merges in as component="worker".
    let s = Server::start().await;
    let mut jobs = Vec::new();
    for i in 0..3 {
        let id = s.upload_ready(jpeg(320 + i * 16, 240), "image/jpeg").await;
        jobs.push(
            s.submit(json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 64, "height": 64}}))
                .await["job_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for j in &jobs {
        assert_eq!(
            s.wait_job(j, Duration::from_secs(60)).await["status"],
            "completed"
        );
    }
    // A rejected upload (the bytes are not the declared type) and a refused file.
    let init = s.init_upload("image/jpeg", 1000).await;
    s.send_upload(&init, b"not a jpeg at all".to_vec(), "image/jpeg")
        .await;
    let r = s.complete(init["upload_id"].as_str().unwrap()).await;
    assert_eq!(r.status(), 422);
    assert_eq!(upload_file(&s, "a.jpg", jpeg(100, 80)).await.status(), 201);
    assert_eq!(
        upload_file(&s, "b.jpg", b"GIF89a-nope".to_vec())
            .await
            .status()
            .as_u16()
            / 100,
        4
    );
    assert_eq!(
        s.get("/jobs/00000000-0000-0000-0000-000000000000")
            .await
            .status()
            .as_u16()
            / 100,
        4
    );

    let text = scrape(&s).await;

    // promtool's own parser and linter accept it.
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every metric the alert rules and the dashboard use exists in a real scrape.
    let have = families(&text);
    let used = names_used_in_deploy();
    assert!(used.len() >= 10, "deploy/ names {used:?}");
    let missing: Vec<_> = used.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "used in deploy/ but not exposed: {missing:?}"
    );
    let listed: BTreeSet<String> = std::fs::read_to_string(repo_root().join("deploy/metrics.txt"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let unlisted: Vec<_> = listed.difference(&have).collect();
    assert!(
        unlisted.is_empty(),
        "listed in deploy/metrics.txt but not exposed: {unlisted:?}"
    );

    // The values follow the workload.
    assert!(
        value(
            &text,
            r#"photo_api_http_requests_total{component="api",route="/jobs",method="POST",status_class="2xx"}"#
        ) >= 3.0
    );
    assert!(
        value(
            &text,
            r#"photo_api_http_requests_total{component="api",route="/jobs/{job_id}",method="GET",status_class="4xx"}"#
        ) >= 1.0
    );
    assert!(
        value(
            &text,
            r#"photo_api_http_request_duration_seconds_count{component="api",route="/jobs",method="POST",status_class="2xx"}"#
        ) >= 3.0
    );
    // Counted in the worker process, seen through the server.
    assert_eq!(
        value(
            &text,
            r#"photo_api_job_attempts_total{component="worker",job_type="thumbnail",outcome="completed"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            r#"photo_api_job_duration_seconds_count{component="worker",job_type="thumbnail",outcome="completed"}"#
        ),
        3.0
    );
    assert!(
        value(
            &text,
            r#"process_resident_memory_bytes{component="worker"}"#
        ) > 1e6
    );
    assert!(value(&text, r#"process_resident_memory_bytes{component="api"}"#) > 1e6);
    assert!(
        value(
            &text,
            r#"photo_api_db_operation_duration_seconds_count{component="api",operation="insert_job"}"#
        ) >= 3.0
    );
    assert!(
        value(
            &text,
            if common::temporal_engine() {
                // A Temporal activity starts its attempt by the job's id instead of claiming one.
                r#"photo_api_db_operation_duration_seconds_count{component="worker",operation="start_attempt"}"#
            } else {
                r#"photo_api_db_operation_duration_seconds_count{component="worker",operation="claim_job"}"#
            }
        ) >= 3.0
    );
    assert!(
        value(
            &text,
            r#"photo_api_storage_operation_duration_seconds_count{component="worker",operation="put_bytes"}"#
        ) >= 3.0
    );
    assert_eq!(
        value(
            &text,
            r#"photo_api_uploads_total{component="api",source="presigned",outcome="accepted"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            r#"photo_api_uploads_total{component="api",source="presigned",outcome="rejected"}"#
        ),
        1.0
    );
    let rejections: f64 = samples(&text)
        .iter()
        .filter(|(k, _)| k.starts_with("photo_api_upload_rejections_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        rejections, 2.0,
        "one presigned upload and one file were refused"
    );
    assert_eq!(
        value(
            &text,
            r#"photo_api_uploads_total{component="api",source="file",outcome="rejected"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"photo_api_uploads_total{component="api",source="file",outcome="accepted"}"#
        ),
        1.0
    );
    assert!(
        value(
            &text,
            r#"photo_api_upload_bytes_total{component="api",source="file"}"#
        ) > 100.0
    );
    assert_eq!(
        value(&text, r#"photo_api_jobs_dead_letter{component="api"}"#),
        0.0
    );
    assert_eq!(
        value(
            &text,
            r#"photo_api_jobs_oldest_queued_age_seconds{component="api",job_type="thumbnail"}"#
        ),
        0.0
    );
    assert_eq!(
        value(
            &text,
            r#"photo_api_dependency_up{component="api",dependency="database"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"photo_api_dependency_up{component="api",dependency="storage"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"photo_api_dependency_up{component="api",dependency="workers"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn queue_depth_and_oldest_age_come_from_the_database() {
    // No workers: submitted jobs wait, and the gauges show them.
    let s = Server::start_with(Opts::default().env("PHOTO_API_WORKER_MODE", "none")).await;
    let id = s.upload_ready(jpeg(64, 48), "image/jpeg").await;
    for _ in 0..4 {
        s.submit(json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 16, "height": 16}}))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let text = scrape(&s).await;
    assert_eq!(
        value(
            &text,
            r#"photo_api_jobs{component="api",job_type="thumbnail",status="submitted"}"#
        ),
        4.0
    );
    let age = value(
        &text,
        r#"photo_api_jobs_oldest_queued_age_seconds{component="api",job_type="thumbnail"}"#,
    );
    assert!((1.0..60.0).contains(&age), "oldest queued age {age}");
    // Workers run elsewhere: not a dependency of this process.
    assert!(!text.contains(r#"dependency="workers""#), "{text}");
}

#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = Server::start_with(
        Opts::default().env("PHOTO_API_METRICS_LISTEN", &format!("127.0.0.1:{port}")),
    )
    .await;
    // Not on the main port any more …
    assert_eq!(reqwest::get(s.url("/metrics")).await.unwrap().status(), 404);
    // … but on its own, with the worker's merged in.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(r#"process_resident_memory_bytes{component="worker"}"#) {
            assert!(text.contains(r#"process_resident_memory_bytes{component="api"}"#));
            break;
        }
        assert!(Instant::now() < deadline, "no worker metrics:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The set of series (names and labels, without values) of a scrape, minus the histogram
/// buckets' `le` (fixed by the code anyway).
fn series(text: &str) -> BTreeSet<String> {
    samples(text).into_keys().collect()
}

#[tokio::test]
async fn labels_stay_bounded_while_1000_different_files_are_uploaded() {
    let s = Server::start().await;
    let photo = jpeg(40, 30);
    let send = |i: usize| {
        let s = &s;
        let mut bytes = photo.clone();
        // A different file each time: a different name, size and content.
        bytes.extend(std::iter::repeat_n(b' ', i % 97));
        async move {
            let name = format!("holiday-{i:04}-{}.jpg", uuid_like(i));
            let r = upload_file(s, &name, bytes).await;
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
            let r = s.get(&format!("/files/metadata/albums/{name}")).await;
            assert_eq!(r.status(), 200);
            let r = s
                .get(&format!("/files/metadata/albums/missing-{i}.jpg"))
                .await;
            assert_eq!(r.status(), 404);
        }
    };
    use futures_util::StreamExt;
    futures_util::stream::iter(0..20)
        .map(send)
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    // The first scrape adds series of its own (the /metrics route, the health checks it runs).
    scrape(&s).await;
    let warm = series(&scrape(&s).await);
    futures_util::stream::iter(20..1020)
        .map(send)
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let text = scrape(&s).await;
    let after = series(&text);
    let added: Vec<_> = after.difference(&warm).collect();
    assert!(
        added.is_empty(),
        "new series after 1,000 more files: {added:?}"
    );
    assert_eq!(
        value(
            &text,
            r#"photo_api_uploads_total{component="api",source="file",outcome="accepted"}"#
        ),
        1020.0
    );
    // No label value is a path, a file name or an id.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            !l.contains("holiday-") && !l.contains("missing-") && !l.contains("albums"),
            "{l}"
        );
    }
    assert!(after.len() < 1000, "{} series", after.len());
}

fn uuid_like(i: usize) -> String {
    format!("{:08x}-{:04x}", i.wrapping_mul(2_654_435_761), i)
}

/// A span as the test collector saw it.
#[derive(Debug, Clone)]
struct SpanSeen {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    component: String,
}

/// An OTLP/HTTP collector in the test: POST /v1/traces, protobuf or JSON.
async fn collector() -> (String, Arc<Mutex<Vec<SpanSeen>>>) {
    let seen: Arc<Mutex<Vec<SpanSeen>>> = Arc::default();
    let store = seen.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let json = headers
                        .get("content-type")
                        .is_some_and(|v| v.to_str().unwrap().contains("json"));
                    let req: ExportTraceServiceRequest = if json {
                        serde_json::from_slice(&body).unwrap()
                    } else {
                        ExportTraceServiceRequest::decode(body).unwrap()
                    };
                    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
                    let mut out = store.lock().unwrap();
                    for rs in req.resource_spans {
                        let component = rs
                            .resource
                            .iter()
                            .flat_map(|r| r.attributes.iter())
                            .find(|kv| kv.key == "photo_api.component")
                            .and_then(|kv| kv.value.as_ref())
                            .map(|v| format!("{:?}", v.value))
                            .unwrap_or_default();
                        for ss in rs.scope_spans {
                            for sp in ss.spans {
                                out.push(SpanSeen {
                                    trace_id: hex(&sp.trace_id),
                                    span_id: hex(&sp.span_id),
                                    parent: hex(&sp.parent_span_id),
                                    name: sp.name,
                                    component: component.clone(),
                                });
                            }
                        }
                    }
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

async fn job_joins_the_request_trace(protocol: &str) {
    let (endpoint, seen) = collector().await;
    let s = Server::start_with(
        Opts::default()
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100"),
    )
    .await;
    let id = s.upload_ready(jpeg(200, 150), "image/jpeg").await;
    let trace_id: String = (0..32)
        .map(|i| char::from_digit((i * 7 + protocol.len() as u32) % 16, 16).unwrap())
        .collect();
    let parent = "00f067aa0ba902b7";
    let r = s
        .http
        .post(s.url("/jobs"))
        .bearer_auth(&s.key)
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .json(&json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 32, "height": 32}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    let job_id = job["job_id"].as_str().unwrap();
    let done = s.wait_job(job_id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["trace_id"], trace_id, "{done}");

    // The request's spans and the worker's job spans, under the caller's trace id.
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans: Vec<SpanSeen> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        if [
            "request",
            "db.insert_job",
            "job",
            "step.read",
            "step.transform",
            "step.write",
            "storage.put_bytes",
        ]
        .iter()
        .all(|n| names.contains(n))
        {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans of the trace so far: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap().clone();
    let request = by_name("request");
    assert_eq!(
        request.parent, parent,
        "the request continues the caller's span"
    );
    assert!(request.component.contains("api"), "{request:?}");
    let insert = by_name("db.insert_job");
    assert_eq!(insert.parent, request.span_id);
    // The job ran in the worker process, as a child of the span that inserted it.
    let job_span = by_name("job");
    assert_eq!(job_span.parent, insert.span_id);
    assert!(job_span.component.contains("worker"), "{job_span:?}");
    for step in ["step.read", "step.transform", "step.write"] {
        assert_eq!(by_name(step).parent, job_span.span_id, "{step}");
    }
    assert_eq!(
        by_name("storage.put_bytes").parent,
        by_name("step.write").span_id
    );
}

#[tokio::test]
async fn a_job_carries_the_trace_of_its_request_over_otlp_protobuf() {
    job_joins_the_request_trace("http/protobuf").await;
}

#[tokio::test]
async fn a_job_carries_the_trace_of_its_request_over_otlp_json() {
    job_joins_the_request_trace("http/json").await;
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_traced_and_jobs_have_no_trace_id() {
    let s = Server::start().await;
    let id = s.upload_ready(jpeg(64, 48), "image/jpeg").await;
    let r = s
        .http
        .post(s.url("/jobs"))
        .bearer_auth(&s.key)
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .json(&json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 16, "height": 16}}))
        .send()
        .await
        .unwrap();
    let job: Value = r.json().await.unwrap();
    let done = s
        .wait_job(job["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert!(done.get("trace_id").is_none(), "{done}");
}

#[tokio::test]
async fn json_logs_carry_request_tenant_and_job_and_never_secrets() {
    let dir = common::tempdir();
    let log = dir.join("server.log");
    let key = "pk_test_observability_0123456789abcdef0123456789";
    let s = Server::start_with(
        Opts {
            data_dir: Some(dir.clone()),
            stderr: Some(log.clone()),
            ..Opts::default()
        }
        .env("API_KEY", key)
        .env("PHOTO_API_LOG_FORMAT", "json")
        .env(
            "LOG_LEVEL",
            "debug,sqlx=warn,hyper=info,h2=info,tower=info,reqwest=info",
        ),
    )
    .await;
    let id = s.upload_ready(jpeg(120, 90), "image/jpeg").await;
    let job = s
        .submit(json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 32, "height": 32}}))
        .await;
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    let done = s.wait_job(&job_id, Duration::from_secs(60)).await;
    let signed_url = done["outputs"][0]["url"].as_str().unwrap().to_owned();
    assert_eq!(common::download(&signed_url).await.0, 200);
    let hook: Value = s
        .post(
            "/webhooks",
            json!({"url": "http://127.0.0.1:9/hook", "event_types": ["job.completed"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let hook_secret = hook["secret"].as_str().unwrap().to_owned();
    let wrong_key = "pk_wrong_key_that_must_not_be_logged_0000000000";
    let r = s
        .http
        .get(s.url("/jobs"))
        .bearer_auth(wrong_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Let the worker and the webhook sender log a little more, then stop everything.
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.signal("TERM");
    let mut s = s;
    let _ = s.child.wait();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 10, "{} lines", lines.len());
    for l in &lines {
        for f in ["timestamp", "level", "target"] {
            assert!(l.get(f).is_some(), "{f} missing: {l}");
        }
    }
    let in_span = |l: &Value, field: &str| -> Option<String> {
        l["spans"]
            .as_array()?
            .iter()
            .find_map(|s| s[field].as_str().map(str::to_owned))
    };
    // A request's lines name the request and the tenant.
    assert!(
        lines.iter().any(|l| in_span(l, "request_id").is_some()
            && in_span(l, "tenant").as_deref() == Some("default")),
        "no line with request_id and tenant"
    );
    // The worker's lines name the job.
    assert!(
        lines
            .iter()
            .any(|l| in_span(l, "job_id").as_deref() == Some(job_id.as_str())),
        "no line with job_id {job_id}"
    );
    // Secrets and signed URLs never appear.
    let query = signed_url
        .split_once('?')
        .map(|(_, q)| q.to_owned())
        .unwrap_or_default();
    assert!(!query.is_empty());
    for (what, secret) in [
        ("API key", key),
        ("wrong API key", wrong_key),
        ("webhook secret", hook_secret.as_str()),
        ("signed URL query", query.as_str()),
    ] {
        assert!(!text.contains(secret), "the {what} was logged");
    }
    for marker in ["X-Amz-Signature", "X-Amz-Credential", "sig="] {
        assert!(!text.contains(marker), "{marker} was logged");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_otlp_endpoint_the_exporter_cannot_reach_fails_start_up() {
    let dir = common::tempdir();
    for (endpoint, protocol, expect) in [
        (
            "https://collector.example:4318",
            "http/protobuf",
            "must be an http:// URL",
        ),
        ("http://127.0.0.1:4318", "grpc", "grpc"),
    ] {
        let out = common::command(&dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{endpoint} {protocol}: started");
        assert!(err.contains(expect), "{endpoint} {protocol}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
