//! Jobs in depth (issue 8), black-box: cancel, retry, the dead-letter list and redrive — on
//! the engine the suite runs on (`PHOTO_API_TEST_ENGINE`: the SQL queue or Temporal) and the
//! backend (`PHOTO_API_TEST_BACKEND`: embedded or PostgreSQL + s3s-fs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The database URL of a test server's data directory.
fn database_url(data_dir: &Path) -> String {
    match production() {
        Some(p) => p.database_url(data_dir),
        None => format!("sqlite://{}", data_dir.join("photo-api.db").display()),
    }
}

/// An API key of another tenant (`other`), stored straight into the server's database: the
/// service has no key-management route yet.
async fn other_tenant_key(data_dir: &Path) -> String {
    let repo = photo_db::open(&database_url(data_dir), &photo_db::PgOptions::default())
        .await
        .unwrap();
    let k = photo_api_http::auth::generate_key();
    repo.insert_api_key(&photo_db::ApiKeyRecord {
        key_id: k.key_id.clone(),
        tenant: photo_core::TenantId::parse("other").unwrap(),
        name: "other tenant".into(),
        secret_sha256: hex::encode(photo_api_http::auth::key_sha256(&k.key)),
        scopes: vec!["read".into(), "write".into()],
        created_at: chrono::Utc::now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    })
    .await
    .unwrap();
    k.key
}

fn spawn_worker(data_dir: &Path) -> KillOnDrop {
    let mut c = command(data_dir);
    c.arg("worker")
        .env("PHOTO_API_WORKER_CONCURRENCY", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    KillOnDrop(c.spawn().unwrap())
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn statuses(job: &Value) -> Vec<String> {
    job["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_owned())
        .collect()
}

/// The Temporal workflow statuses of this server's jobs, by workflow id.
fn workflow_statuses(data_dir: &Path) -> Vec<(String, String)> {
    temporal_workflow_list(data_dir)
        .iter()
        .map(|w| {
            (
                w["execution"]["workflowId"].as_str().unwrap().to_owned(),
                w["status"].to_string(),
            )
        })
        .collect()
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post_empty(s: &Server, path: &str) -> reqwest::Response {
    s.http
        .post(s.url(path))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cancelled_queued_job_never_starts() {
    // No workers: the job stays queued until it is cancelled; then a worker comes.
    let s = Server::start_with(Opts::default().arg("--worker-mode").arg("none")).await;
    let id = s.upload_ready(jpeg(320, 240), "image/jpeg").await;
    let job = s
        .submit(json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 64, "height": 64}}))
        .await;
    let jid = job["job_id"].as_str().unwrap().to_owned();
    let r = post_empty(&s, &format!("/jobs/{jid}/cancel")).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "cancelled", "{v}");

    let _w = spawn_worker(&s.data_dir);
    // A control job proves the worker is up and has had the chance to take the cancelled one.
    let control = s
        .submit(json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 32, "height": 32}}))
        .await;
    let c = s
        .wait_job(control["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(c["status"], "completed", "{c}");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let j = s.job(&jid).await;
    assert_eq!(j["status"], "cancelled", "{j}");
    assert_eq!(j["attempts"], 0, "never started: {j}");
    assert_eq!(statuses(&j), ["submitted", "cancelled"], "{j}");
    assert!(j["outputs"].as_array().unwrap().is_empty());
    assert!(j["completed_at"].is_string(), "{j}");

    if temporal_engine() {
        let wf = j["temporal_workflow_id"].as_str().unwrap().to_owned();
        let data_dir = s.data_dir.clone();
        let mut last = Vec::new();
        wait_until(
            "the workflow to end cancelled",
            Duration::from_secs(30),
            || {
                last = workflow_statuses(&data_dir);
                last.iter()
                    .any(|(id, st)| *id == wf && st.contains("CANCELED"))
            },
        )
        .await;
    }
}

#[tokio::test]
async fn a_cancelled_running_job_stops_at_a_step_boundary_with_its_outputs_gone() {
    // One job at a time: a control job submitted after the cancel completes only once the
    // cancelled attempt has let go of its slot, so its end is observable from outside.
    let s = Server::start_with(
        Opts::default()
            .env("MAX_UPLOAD_SIZE", "60MB")
            .env("PHOTO_API_WORKER_CONCURRENCY", "1"),
    )
    .await;
    // A large noisy image re-encoded as PNG takes seconds: a wide window to cancel it in.
    let big = s.upload_ready(noisy_jpeg(4000, 3000), "image/jpeg").await;
    let small = s.upload_ready(jpeg(320, 240), "image/jpeg").await;
    let job = s
        .submit(json!({"job_type": "transform", "upload_id": big, "params": {"format": "png"}}))
        .await;
    let jid = job["job_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = s.job(&jid).await;
        if j["status"] == "started" {
            break;
        }
        assert_ne!(
            j["status"], "completed",
            "finished before it could be cancelled"
        );
        assert!(Instant::now() < deadline, "never started: {j}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = post_empty(&s, &format!("/jobs/{jid}/cancel")).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "cancelled", "{v}");

    let control = s
        .submit(json!({"job_type": "thumbnail", "upload_id": small, "params": {"width": 32, "height": 32}}))
        .await;
    let c = s
        .wait_job(
            control["job_id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(c["status"], "completed", "{c}");

    let j = s.job(&jid).await;
    assert_eq!(j["status"], "cancelled", "{j}");
    assert_eq!(j["attempts"], 1, "{j}");
    assert_eq!(
        statuses(&j),
        ["submitted", "started", "cancelled"],
        "the attempt recorded nothing after the cancel: {j}"
    );
    assert!(j["outputs"].as_array().unwrap().is_empty(), "{j}");
    // The attempt's output key (deterministic) holds nothing, nor does anything under the job.
    let key = format!("tenants/default/jobs/{jid}/transform.png");
    assert!(
        !processed_object_path(&s.data_dir, &key).exists(),
        "the cancelled job's output is gone"
    );
    let processed = processed_object_path(&s.data_dir, "");
    let leftovers: Vec<String> = files_under(&processed)
        .into_iter()
        .filter(|f| f.contains(&jid))
        .collect();
    assert!(
        leftovers.is_empty(),
        "nothing of the cancelled job is stored: {leftovers:?}"
    );

    if temporal_engine() {
        let wf = j["temporal_workflow_id"].as_str().unwrap().to_owned();
        let data_dir = s.data_dir.clone();
        wait_until(
            "the workflow to end cancelled",
            Duration::from_secs(30),
            || {
                workflow_statuses(&data_dir)
                    .iter()
                    .any(|(id, st)| *id == wf && st.contains("CANCELED"))
            },
        )
        .await;
    }
}

#[tokio::test]
async fn cancel_and_retry_answer_409_by_state_and_404_across_tenants() {
    let s = Server::start().await;
    let id = s.upload_ready(jpeg(320, 240), "image/jpeg").await;
    let job = s
        .submit(json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 64, "height": 64}}))
        .await;
    let jid = job["job_id"].as_str().unwrap().to_owned();
    let done = s.wait_job(&jid, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");

    let p = expect_problem(
        post_empty(&s, &format!("/jobs/{jid}/cancel")).await,
        409,
        "job_not_cancellable",
    )
    .await;
    assert_eq!(p["status"], 409);
    expect_problem(
        post_empty(&s, &format!("/jobs/{jid}/retry")).await,
        409,
        "job_not_retryable",
    )
    .await;
    // The completed job and its output are untouched.
    let after = s.job(&jid).await;
    assert_eq!(after["status"], "completed");
    let (status, _, _) = download(after["outputs"][0]["url"].as_str().unwrap()).await;
    assert_eq!(status, 200);

    // Unknown and malformed ids.
    for path in [
        "/jobs/01890000-0000-7000-8000-000000000000/cancel".to_owned(),
        "/jobs/not-a-job/cancel".to_owned(),
        "/jobs/01890000-0000-7000-8000-000000000000/retry".to_owned(),
    ] {
        expect_problem(post_empty(&s, &path).await, 404, "not_found").await;
    }

    // Another tenant sees none of it: 404, and the job is unchanged.
    let other = other_tenant_key(&s.data_dir).await;
    for action in ["cancel", "retry"] {
        let r = s
            .http
            .post(s.url(&format!("/jobs/{jid}/{action}")))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap();
        expect_problem(r, 404, "not_found").await;
    }
    let r = s
        .http
        .post(s.url("/jobs/redrive"))
        .bearer_auth(&other)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["redriven"], 0, "{v}");

    // Bad redrive bodies.
    for body in [
        json!({"limit": 0}),
        json!({"limit": 1001}),
        json!({"job_type": "nope"}),
        json!({"error_code": ""}),
    ] {
        expect_problem(
            s.post("/jobs/redrive", body).await,
            422,
            "invalid_parameters",
        )
        .await;
    }
    expect_problem(
        s.post("/jobs/redrive", json!({"bogus": 1})).await,
        422,
        "invalid_request",
    )
    .await;
    // Without auth.
    let r = s
        .http
        .post(s.url(&format!("/jobs/{jid}/cancel")))
        .send()
        .await
        .unwrap();
    expect_problem(r, 401, "unauthenticated").await;
}

#[tokio::test]
async fn a_failed_job_retried_after_its_cause_is_fixed_completes() {
    let s = Server::start().await;
    let init = s.init_upload("image/jpeg", 100_000).await;
    let bytes = jpeg(320, 240);
    assert!(
        s.send_upload(&init, bytes, "image/jpeg")
            .await
            .status()
            .is_success()
    );
    let up = init["upload_id"].as_str().unwrap();
    let r = s.complete(up).await;
    assert_eq!(r.status(), 200);
    // Take the raw object away: the job fails permanently (source_missing).
    let raw = raw_object_path(&s.data_dir, init["key"].as_str().unwrap());
    let aside = raw.with_extension("aside");
    std::fs::rename(&raw, &aside).unwrap();
    let job = s
        .submit(json!({"job_type": "thumbnail", "upload_id": up, "params": {"width": 64, "height": 64}}))
        .await;
    let jid = job["job_id"].as_str().unwrap().to_owned();
    let failed = s.wait_job(&jid, Duration::from_secs(60)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error_code"], "source_missing", "{failed}");

    // Put it back and retry.
    std::fs::rename(&aside, &raw).unwrap();
    let r = post_empty(&s, &format!("/jobs/{jid}/retry")).await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "submitted", "{v}");
    assert_eq!(v["attempts"], 0, "a fresh set of attempts: {v}");
    assert!(v["error_code"].is_null(), "{v}");
    let done = s.wait_job(&jid, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
    let h = statuses(&done);
    assert_eq!(
        h,
        [
            "submitted",
            "started",
            "failed",
            "submitted",
            "started",
            "completed"
        ],
        "the history keeps the failed attempt: {done}"
    );
    let (status, ct, body) = download(done["outputs"][0]["url"].as_str().unwrap()).await;
    assert_eq!((status, ct.as_str()), (200, "image/jpeg"));
    assert!(image::load_from_memory(&body).is_ok());
    // A second retry of a completed job is refused.
    expect_problem(
        post_empty(&s, &format!("/jobs/{jid}/retry")).await,
        409,
        "job_not_retryable",
    )
    .await;
    if temporal_engine() {
        let wf = done["temporal_workflow_id"].as_str().unwrap().to_owned();
        assert!(
            wf.starts_with(&format!("photo-job-{jid}-r")),
            "the retry ran as a new workflow: {wf}"
        );
    }
}

#[tokio::test]
async fn dead_letter_list_and_redrive_of_all_or_a_filter() {
    // Every attempt exceeds a 1 ms time limit: 2 attempts, then dead.
    let dir = tempdir();
    let s = Server::start_with(
        Opts {
            data_dir: Some(dir.clone()),
            ..Opts::default()
        }
        .env("PHOTO_API_JOB_TIMEOUT", "1ms")
        .env("PHOTO_API_MAX_ATTEMPTS", "2")
        .env("PHOTO_API_RETRY_BACKOFF", "50ms"),
    )
    .await;
    let id = s.upload_ready(jpeg(1200, 900), "image/jpeg").await;
    let mut thumbs = Vec::new();
    let mut transforms = Vec::new();
    for i in 0..3 {
        let t = s
            .submit(json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 64 + i, "height": 64}}))
            .await;
        thumbs.push(t["job_id"].as_str().unwrap().to_owned());
    }
    for _ in 0..2 {
        let t = s
            .submit(json!({"job_type": "transform", "upload_id": id, "params": {"format": "png"}}))
            .await;
        transforms.push(t["job_id"].as_str().unwrap().to_owned());
    }
    for j in thumbs.iter().chain(&transforms) {
        let d = s.wait_job(j, Duration::from_secs(60)).await;
        assert_eq!(d["status"], "dead", "{d}");
    }
    let dead = jobs_in(&s, "dead").await;
    assert_eq!(dead.len(), 5);
    for d in &dead {
        assert_eq!(
            d["attempts"], 2,
            "attempt count in the dead-letter list: {d}"
        );
        assert_eq!(d["error_code"], "timeout", "{d}");
        assert!(
            d["error_message"].as_str().unwrap().contains("time limit"),
            "last error in the dead-letter list: {d}"
        );
    }
    let key = s.key.clone();
    drop(s);

    // The cause fixed (a sane time limit), redrive: first a filter, then the rest.
    let s = Server::start_with(Opts {
        data_dir: Some(dir),
        key: Some(key),
        ..Opts::default()
    })
    .await;
    let r = s
        .post(
            "/jobs/redrive",
            json!({"job_type": "transform", "error_code": "timeout"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["redriven"], 2, "{v}");
    assert_eq!(v["more"], false);
    let mut got: Vec<String> = v["job_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let mut want = transforms.clone();
    want.sort();
    assert_eq!(got, want, "only the filtered jobs");
    for j in &transforms {
        let d = s.wait_job(j, Duration::from_secs(60)).await;
        assert_eq!(d["status"], "completed", "{d}");
        assert_eq!(d["attempts"], 1, "{d}");
    }
    for j in &thumbs {
        assert_eq!(s.job(j).await["status"], "dead", "not in the filter");
    }
    // A limit stops early and says so.
    let v: Value = s
        .post("/jobs/redrive", json!({"limit": 1}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["redriven"].as_u64(), v["more"].as_bool()),
        (Some(1), Some(true)),
        "{v}"
    );
    let v: Value = s
        .post("/jobs/redrive", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["redriven"].as_u64(), v["more"].as_bool()),
        (Some(2), Some(false)),
        "{v}"
    );
    for j in &thumbs {
        let d = s.wait_job(j, Duration::from_secs(60)).await;
        assert_eq!(d["status"], "completed", "{d}");
    }
    assert!(jobs_in(&s, "dead").await.is_empty());
    let v: Value = s
        .post("/jobs/redrive", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["redriven"], 0, "nothing left to redrive: {v}");
}

async fn post_with_key(s: &Server, key: &str, path: &str, body: &Value) -> reqwest::Response {
    s.http
        .post(s.url(path))
        .bearer_auth(&s.key)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn idempotency_keys_give_one_result_per_key_and_body_even_concurrently() {
    let s = Server::start().await;
    let up = s.upload_ready(jpeg(320, 240), "image/jpeg").await;
    let body =
        json!({"job_type": "thumbnail", "upload_id": up, "params": {"width": 64, "height": 64}});

    let r = post_with_key(&s, "k-1", "/jobs", &body).await;
    assert_eq!(r.status(), 202);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let first: Value = r.json().await.unwrap();
    let a = first["job_id"].as_str().unwrap().to_owned();
    assert_eq!(loc, format!("/jobs/{a}"));

    // The same key and body: the same job, replayed (the Location header too).
    let r = post_with_key(&s, "k-1", "/jobs", &body).await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.headers()["location"].to_str().unwrap(), loc);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again, first, "the first response, replayed as it was");
    // The same body with its keys in another order is the same request.
    let reordered: Value = serde_json::from_str(&format!(
        r#"{{"params":{{"height":64,"width":64}},"upload_id":"{up}","job_type":"thumbnail"}}"#
    ))
    .unwrap();
    let r = post_with_key(&s, "k-1", "/jobs", &reordered).await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["job_id"], a.as_str());
    // The same key with another body.
    let other =
        json!({"job_type": "thumbnail", "upload_id": up, "params": {"width": 65, "height": 64}});
    expect_problem(
        post_with_key(&s, "k-1", "/jobs", &other).await,
        422,
        "idempotency_key_reused",
    )
    .await;

    // Ten clients at once with one new key: one job, the same answer for all.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let http = reqwest::Client::new();
        let (url, key, body) = (s.url("/jobs"), s.key.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "k-concurrent")
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (status, v["job_id"].as_str().map(str::to_owned))
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, id) = t.await.unwrap();
        assert_eq!(status, 202);
        ids.insert(id.unwrap());
    }
    assert_eq!(ids.len(), 1, "one job for ten concurrent clients: {ids:?}");
    let b = ids.into_iter().next().unwrap();
    assert_ne!(b, a);
    // Exactly two jobs exist: one per key.
    let all: Value = s.get("/jobs?limit=200").await.json().await.unwrap();
    let mut listed: Vec<&str> = all["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort_unstable();
    assert_eq!(listed, want);

    // A failed request does not keep its key: the client may use it again.
    let missing = json!({"job_type": "thumbnail", "upload_id": "01890000-0000-7000-8000-000000000000", "params": {"width": 64, "height": 64}});
    expect_problem(
        post_with_key(&s, "k-2", "/jobs", &missing).await,
        404,
        "not_found",
    )
    .await;
    let r = post_with_key(&s, "k-2", "/jobs", &body).await;
    assert_eq!(r.status(), 202, "the key is free after a failed request");
    assert_ne!(r.json::<Value>().await.unwrap()["job_id"], a.as_str());

    // Keys are per tenant: another tenant's "k-1" is its own.
    let other_key = other_tenant_key(&s.data_dir).await;
    let init = json!({"content_type": "image/jpeg", "max_bytes": 1000});
    let r = s
        .http
        .post(s.url("/uploads/init"))
        .bearer_auth(&other_key)
        .header("Idempotency-Key", "k-1")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let theirs: Value = r.json().await.unwrap();

    // POST /uploads/init: the same upload for the same key and body, 422 for another body.
    let r = post_with_key(&s, "k-1", "/uploads/init", &init).await;
    assert_eq!(r.status(), 201);
    let mine: Value = r.json().await.unwrap();
    assert_ne!(
        mine["upload_id"], theirs["upload_id"],
        "keys never cross tenants"
    );
    let r = post_with_key(&s, "k-1", "/uploads/init", &init).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.json::<Value>().await.unwrap(), mine);
    expect_problem(
        post_with_key(
            &s,
            "k-1",
            "/uploads/init",
            &json!({"content_type": "image/png", "max_bytes": 1000}),
        )
        .await,
        422,
        "idempotency_key_reused",
    )
    .await;

    // Malformed keys.
    for bad in ["", &"x".repeat(256), "with space"] {
        expect_problem(
            post_with_key(&s, bad, "/jobs", &body).await,
            400,
            "invalid_request",
        )
        .await;
    }
}

#[tokio::test]
async fn idempotency_keys_expire_after_their_ttl() {
    let s = Server::start_with(Opts::default().env("PHOTO_API_IDEMPOTENCY_TTL", "1s")).await;
    let init = json!({"content_type": "image/jpeg", "max_bytes": 1000});
    let first: Value = post_with_key(&s, "k", "/uploads/init", &init)
        .await
        .json()
        .await
        .unwrap();
    let replay: Value = post_with_key(&s, "k", "/uploads/init", &init)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(replay["upload_id"], first["upload_id"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = post_with_key(&s, "k", "/uploads/init", &init).await;
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let later: Value = r.json().await.unwrap();
    assert_ne!(
        later["upload_id"], first["upload_id"],
        "a new upload after the TTL"
    );
}

fn count_sum(b: &Value) -> u64 {
    b["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn a_batch_of_500_jobs_reaches_100_percent_with_counts_that_always_add_up() {
    let s = Server::start().await;
    let up = s.upload_ready(jpeg(64, 48), "image/jpeg").await;
    let items: Vec<Value> = (0..500).map(|_| json!({"upload_id": up})).collect();
    let r = s
        .post(
            "/batches",
            json!({"job_type": "thumbnail", "params": {"width": 16, "height": 16}, "items": items}),
        )
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let created: Value = r.json().await.unwrap();
    let bid = created["batch_id"].as_str().unwrap().to_owned();
    assert_eq!(created["total"], 500);
    assert_eq!(created["job_ids"].as_array().unwrap().len(), 500);
    assert_eq!(count_sum(&created), 500);

    let started = Instant::now();
    let mut polls = 0;
    let mut last_progress = 0.0;
    let done = loop {
        let b: Value = s
            .get(&format!("/batches/{bid}"))
            .await
            .json()
            .await
            .unwrap();
        polls += 1;
        assert_eq!(b["total"], 500);
        assert_eq!(count_sum(&b), 500, "counts add up at every poll: {b}");
        let finished: u64 = ["completed", "failed", "dead", "cancelled"]
            .iter()
            .map(|k| b["counts"][*k].as_u64().unwrap())
            .sum();
        assert_eq!(b["finished"].as_u64().unwrap(), finished, "{b}");
        let p = b["progress"].as_f64().unwrap();
        assert!(
            (0.0..=1.0).contains(&p) && p >= last_progress,
            "progress {last_progress} → {p}"
        );
        assert!((p - finished as f64 / 500.0).abs() < 1e-9);
        last_progress = p;
        if b["done"] == true {
            break b;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "batch not done: {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["progress"], 1.0);
    assert_eq!(done["counts"]["completed"], 500, "{done}");
    eprintln!(
        "500-job batch: done in {:.1}s, {polls} polls",
        started.elapsed().as_secs_f64()
    );

    // The batch's jobs, paged: all 500 exactly once.
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/batches/{bid}/jobs?limit=200&cursor={c}"),
            None => format!("/batches/{bid}/jobs?limit=200"),
        };
        let page: Value = s.get(&path).await.json().await.unwrap();
        for j in page["jobs"].as_array().unwrap() {
            assert_eq!(j["batch_id"], bid.as_str());
            assert_eq!(j["status"], "completed");
            assert!(
                seen.insert(j["job_id"].as_str().unwrap().to_owned()),
                "no duplicates"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let want: std::collections::HashSet<String> = created["job_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn batches_cancel_validate_and_stay_in_their_tenant() {
    let s = Server::start_with(
        Opts::default()
            .arg("--worker-mode")
            .arg("none")
            .env("PHOTO_API_MAX_BATCH_SIZE", "25"),
    )
    .await;
    let up = s.upload_ready(jpeg(64, 48), "image/jpeg").await;
    // A spec for the batch, and per-item specs.
    let mut items: Vec<Value> = (0..10).map(|_| json!({"upload_id": up})).collect();
    for i in 0..10 {
        items.push(json!({"upload_id": up, "job_type": "transform", "params": {"width": 10 + i, "format": "webp"}}));
    }
    let body =
        json!({"job_type": "thumbnail", "params": {"width": 16, "height": 16}, "items": items});
    let r = post_with_key(&s, "batch-1", "/batches", &body).await;
    assert_eq!(r.status(), 202);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/batches/")
    );
    let created: Value = r.json().await.unwrap();
    let bid = created["batch_id"].as_str().unwrap().to_owned();
    assert_eq!(created["counts"]["submitted"], 20);
    assert_eq!(created["progress"], 0.0);
    assert_eq!(created["done"], false);
    // Idempotent: the same key and body are the same batch.
    let again: Value = post_with_key(&s, "batch-1", "/batches", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["batch_id"], bid.as_str());
    let ids: Vec<String> = created["job_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let j = s.job(&ids[15]).await;
    assert_eq!(
        (j["job_type"].as_str(), j["params"]["width"].as_u64()),
        (Some("transform"), Some(15))
    );
    assert_eq!(s.job(&ids[0]).await["job_type"], "thumbnail");

    // Another tenant sees no batch.
    let other = other_tenant_key(&s.data_dir).await;
    for (method, path) in [
        ("GET", format!("/batches/{bid}")),
        ("GET", format!("/batches/{bid}/jobs")),
        ("POST", format!("/batches/{bid}/cancel")),
    ] {
        let req = if method == "GET" {
            s.http.get(s.url(&path))
        } else {
            s.http.post(s.url(&path))
        };
        expect_problem(
            req.bearer_auth(&other).send().await.unwrap(),
            404,
            "not_found",
        )
        .await;
    }
    expect_problem(s.get("/batches/not-a-batch").await, 404, "not_found").await;

    // Cancel: every queued job, once; the batch is done.
    let r = post_empty(&s, &format!("/batches/{bid}/cancel")).await;
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["cancelled"], 20, "{c}");
    assert_eq!(c["counts"]["cancelled"], 20);
    assert_eq!(
        (c["done"].as_bool(), c["progress"].as_f64()),
        (Some(true), Some(1.0))
    );
    assert!(c["cancelled_at"].is_string());
    let c: Value = post_empty(&s, &format!("/batches/{bid}/cancel"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(c["cancelled"], 0, "cancelling again changes nothing");
    // A worker now finds nothing to run.
    let _w = spawn_worker(&s.data_dir);
    let control = s
        .submit(
            json!({"job_type": "thumbnail", "upload_id": up, "params": {"width": 8, "height": 8}}),
        )
        .await;
    let cj = s
        .wait_job(control["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(cj["status"], "completed");
    let page: Value = s
        .get(&format!("/batches/{bid}/jobs?status=cancelled&limit=200"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["jobs"].as_array().unwrap().len(), 20);
    for j in page["jobs"].as_array().unwrap() {
        assert_eq!(j["attempts"], 0, "never started: {j}");
    }

    // Bad batches create nothing (all or none).
    let before = s
        .get("/jobs?limit=200")
        .await
        .json::<Value>()
        .await
        .unwrap()["jobs"]
        .as_array()
        .unwrap()
        .len();
    let too_many: Vec<Value> = (0..26).map(|_| json!({"upload_id": up})).collect();
    let p = expect_problem(
        s.post("/batches", json!({"job_type": "thumbnail", "params": {"width": 8, "height": 8}, "items": too_many})).await,
        422,
        "batch_too_large",
    )
    .await;
    assert_eq!(p["max_batch_size"], 25);
    expect_problem(
        s.post("/batches", json!({"job_type": "thumbnail", "items": []}))
            .await,
        422,
        "invalid_request",
    )
    .await;
    let p = expect_problem(
        s.post(
            "/batches",
            json!({"job_type": "thumbnail", "params": {"width": 8, "height": 8},
                   "items": [{"upload_id": up}, {"upload_id": "01890000-0000-7000-8000-000000000000"}]}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(p["item"], 1, "names the bad item: {p}");
    expect_problem(
        s.post("/batches", json!({"items": [{"upload_id": up}]}))
            .await,
        422,
        "invalid_request",
    )
    .await;
    expect_problem(
        s.post(
            "/batches",
            json!({"job_type": "thumbnail", "params": {"width": 0}, "items": [{"upload_id": up}]}),
        )
        .await,
        422,
        "invalid_parameters",
    )
    .await;
    let after = s
        .get("/jobs?limit=200")
        .await
        .json::<Value>()
        .await
        .unwrap()["jobs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "no job from a refused batch");
    for q in ["status=nope", "limit=0", "limit=201", "cursor=zzz"] {
        expect_problem(
            s.get(&format!("/batches/{bid}/jobs?{q}")).await,
            400,
            "invalid_request",
        )
        .await;
    }
}

/// An open server-sent-events stream.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

/// One `event: job` of a stream: its id and data.
#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    id: i64,
    data: Value,
}

impl Sse {
    async fn open(s: &Server, key: &str, path: &str, last_id: Option<i64>) -> Sse {
        let mut req = s.http.get(s.url(path)).bearer_auth(key);
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Sse {
            resp,
            buf: String::new(),
        }
    }

    /// The next job event, or `None` when the stream ended or `wait` passed without one.
    async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse::<i64>().unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event.as_deref() == Some("job") {
                    return Some(SseEvent {
                        id: id.expect("every job event has an id"),
                        data: serde_json::from_str(&data).unwrap(),
                    });
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) | Err(_) => return None,
                Ok(Err(e)) => panic!("stream failed: {e}"),
            }
        }
    }
}

#[tokio::test]
async fn event_streams_resume_with_last_event_id_without_gaps_or_duplicates() {
    let s = Server::start().await;
    let up = s.upload_ready(jpeg(64, 48), "image/jpeg").await;
    let submit_n = |n: usize| {
        let s = &s;
        let up = up.clone();
        async move {
            let mut ids = Vec::new();
            for i in 0..n {
                let j = s
                    .submit(json!({"job_type": "thumbnail", "upload_id": up, "params": {"width": 8 + i, "height": 8}}))
                    .await;
                ids.push(j["job_id"].as_str().unwrap().to_owned());
            }
            ids
        }
    };
    let mut jobs = submit_n(10).await;

    // First session: read some events, then drop the connection mid-stream.
    let mut seen: Vec<SseEvent> = Vec::new();
    let mut first = Sse::open(&s, &s.key, "/events", None).await;
    while seen.len() < 12 {
        let e = first
            .next(Duration::from_secs(30))
            .await
            .expect("events keep coming");
        seen.push(e);
    }
    drop(first);
    let last = seen.last().unwrap().id;
    // Events happen while the client is away.
    jobs.extend(submit_n(10).await);
    for j in &jobs {
        s.wait_job(j, Duration::from_secs(60)).await;
    }
    // Second session resumes after the last id it saw.
    let mut second = Sse::open(&s, &s.key, "/events", Some(last)).await;
    while let Some(e) = second.next(Duration::from_secs(2)).await {
        seen.push(e);
    }

    // No duplicates, in order.
    for w in seen.windows(2) {
        assert!(
            w[0].id < w[1].id,
            "ids strictly increase: {} then {}",
            w[0].id,
            w[1].id
        );
    }
    // No gaps: per job, exactly its history.
    let mut total = 0;
    for j in &jobs {
        let history: Vec<String> = s.job(j).await["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["status"].as_str().unwrap().to_owned())
            .collect();
        let streamed: Vec<String> = seen
            .iter()
            .filter(|e| e.data["job_id"] == j.as_str())
            .map(|e| e.data["status"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            streamed, history,
            "job {j}: the stream shows its whole history once"
        );
        assert_eq!(history.last().map(String::as_str), Some("completed"));
        total += history.len();
    }
    assert_eq!(seen.len(), total, "nothing but these jobs' events");
    // A fresh stream from the start replays the same events, ids and all.
    let mut third = Sse::open(&s, &s.key, "/events", None).await;
    let mut replay = Vec::new();
    while let Some(e) = third.next(Duration::from_secs(2)).await {
        replay.push(e);
    }
    assert_eq!(replay, seen);
    // `?after=` works like the header.
    let mut from_query = Sse::open(&s, &s.key, &format!("/events?after={last}"), None).await;
    let e = from_query.next(Duration::from_secs(5)).await.unwrap();
    assert!(e.id > last);
    assert_eq!(Some(&e), seen.iter().find(|x| x.id > last));

    // One job's stream: its events, then the stream ends; resumable too.
    let j = &jobs[3];
    let mut one = Sse::open(&s, &s.key, &format!("/jobs/{j}/events"), None).await;
    let mut mine = Vec::new();
    while let Some(e) = one.next(Duration::from_secs(10)).await {
        mine.push(e);
    }
    let want: Vec<SseEvent> = seen
        .iter()
        .filter(|e| e.data["job_id"] == j.as_str())
        .cloned()
        .collect();
    assert_eq!(mine, want, "the job's stream ends after its terminal event");
    let mut rest = Sse::open(&s, &s.key, &format!("/jobs/{j}/events"), Some(want[0].id)).await;
    let mut tail = Vec::new();
    while let Some(e) = rest.next(Duration::from_secs(10)).await {
        tail.push(e);
    }
    assert_eq!(tail, want[1..].to_vec());

    // Tenants: another tenant's stream shows none of these; its job route is 404.
    let other = other_tenant_key(&s.data_dir).await;
    let mut theirs = Sse::open(&s, &other, "/events", None).await;
    assert_eq!(theirs.next(Duration::from_millis(800)).await, None);
    let r = s
        .http
        .get(s.url(&format!("/jobs/{j}/events")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    expect_problem(r, 404, "not_found").await;
    // Bad resume points.
    for bad in ["abc", "-1", "99999999999999999999999"] {
        let r = s
            .http
            .get(s.url("/events"))
            .bearer_auth(&s.key)
            .header("Last-Event-ID", bad)
            .send()
            .await
            .unwrap();
        expect_problem(r, 400, "invalid_request").await;
    }
    let r = s.http.get(s.url("/events")).send().await.unwrap();
    expect_problem(r, 401, "unauthenticated").await;
}

/// What a test webhook receiver saw: each request's headers and body, and what it answered.
#[derive(Clone, Default)]
struct Received(std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String, u16)>>>);

/// A webhook receiver on a free port that answers 503 to its first `down_for` requests (it is
/// "down"), then 200.
async fn receiver(down_for: usize) -> (String, Received) {
    let got = Received::default();
    let state = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let mut v = state.0.lock().unwrap();
                let status = if v.len() < down_for { 503 } else { 200 };
                v.push((headers, body, status));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

fn verify_signature(secret: &str, headers: &axum::http::HeaderMap, body: &str) -> bool {
    use hmac::Mac;
    let ts = headers["photo-api-webhook-timestamp"].to_str().unwrap();
    let sig = headers["photo-api-webhook-signature"].to_str().unwrap();
    let Some(hex_sig) = sig.strip_prefix("v1=") else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let fresh = (chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap()).abs() < 300;
    want == hex_sig && fresh
}

#[tokio::test]
async fn a_webhook_receiver_down_at_first_gets_exactly_one_signed_delivery_per_event() {
    // The receiver is on loopback, which webhooks (like source URLs) may reach only when
    // allow-listed.
    let s = Server::start_with(
        Opts::default()
            .env("PHOTO_API_WEBHOOK_RETRY_BASE", "200ms")
            .env("PHOTO_API_SOURCE_URL_ALLOW", "127.0.0.1/32"),
    )
    .await;
    let (url, got) = receiver(4).await;

    // Admin: bad input, then a webhook.
    for bad in [
        json!({"url": "ftp://x/hook", "event_types": ["job.completed"]}),
        json!({"url": url, "event_types": []}),
        json!({"url": url, "event_types": ["job.exploded"]}),
        json!({"url": format!("http://h/{}", "a".repeat(2048)), "event_types": ["job.completed"]}),
    ] {
        expect_problem(s.post("/webhooks", bad).await, 422, "invalid_parameters").await;
    }
    let r = s
        .post(
            "/webhooks",
            json!({"url": url, "event_types": ["job.completed", "job.failed"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let hook: Value = r.json().await.unwrap();
    let hid = hook["webhook_id"].as_str().unwrap().to_owned();
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let list: Value = s.get("/webhooks").await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("secret").is_none(), "the secret is shown once");
    // Another tenant sees none of it.
    let other = other_tenant_key(&s.data_dir).await;
    let theirs: Value = s
        .http
        .get(s.url("/webhooks"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, json!([]));
    for r in [
        s.http.get(s.url(&format!("/webhooks/{hid}/deliveries"))),
        s.http.delete(s.url(&format!("/webhooks/{hid}"))),
    ] {
        expect_problem(
            r.bearer_auth(&other).send().await.unwrap(),
            404,
            "not_found",
        )
        .await;
    }

    // Three jobs complete while the receiver is down; they are not held up by it.
    let up = s.upload_ready(jpeg(64, 48), "image/jpeg").await;
    let mut jobs = Vec::new();
    for i in 0..3 {
        let j = s
            .submit(json!({"job_type": "thumbnail", "upload_id": up, "params": {"width": 8 + i, "height": 8}}))
            .await;
        jobs.push(j["job_id"].as_str().unwrap().to_owned());
    }
    for j in &jobs {
        assert_eq!(
            s.wait_job(j, Duration::from_secs(60)).await["status"],
            "completed"
        );
    }
    let accepted = |g: &Received| g.0.lock().unwrap().iter().filter(|r| r.2 == 200).count();
    let deadline = Instant::now() + Duration::from_secs(60);
    while accepted(&got) < 3 {
        assert!(Instant::now() < deadline, "deliveries never got through");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing more arrives: no duplicate deliveries.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = got.0.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|r| r.2 == 503).count(),
        4,
        "down for the first attempts"
    );
    let ok: Vec<_> = seen.iter().filter(|r| r.2 == 200).collect();
    assert_eq!(ok.len(), 3, "exactly one accepted delivery per event");
    let mut delivered_jobs = Vec::new();
    let mut event_ids = std::collections::HashSet::new();
    for (headers, body, _) in &ok {
        assert!(
            verify_signature(&secret, headers, body),
            "signed: {headers:?}"
        );
        assert!(!verify_signature("whsec_wrong", headers, body));
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["type"], "job.completed");
        assert!(event_ids.insert(v["id"].as_str().unwrap().to_owned()));
        delivered_jobs.push(v["data"]["job_id"].as_str().unwrap().to_owned());
    }
    delivered_jobs.sort();
    let mut want = jobs.clone();
    want.sort();
    assert_eq!(
        delivered_jobs, want,
        "one delivery for each job's completion"
    );
    // Every failed attempt was a retry of one of these deliveries (same delivery id).
    let ok_ids: std::collections::HashSet<String> = ok
        .iter()
        .map(|r| r.0["photo-api-webhook-id"].to_str().unwrap().to_owned())
        .collect();
    for (headers, body, status) in &seen {
        assert!(verify_signature(&secret, headers, body));
        if *status == 503 {
            assert!(ok_ids.contains(headers["photo-api-webhook-id"].to_str().unwrap()));
        }
    }

    // The deliveries, with their attempts, through the API.
    let ds: Value = s
        .get(&format!("/webhooks/{hid}/deliveries"))
        .await
        .json()
        .await
        .unwrap();
    let ds = ds.as_array().unwrap();
    assert_eq!(ds.len(), 3);
    let attempts: u64 = ds.iter().map(|d| d["attempts"].as_u64().unwrap()).sum();
    assert_eq!(attempts, 7, "4 refused + 3 accepted attempts: {ds:?}");
    for d in ds {
        assert_eq!(d["status"], "delivered", "{d}");
        assert_eq!(d["last_status_code"], 200);
    }
    expect_problem(
        s.get(&format!("/webhooks/{hid}/deliveries?limit=0")).await,
        400,
        "invalid_request",
    )
    .await;
    // Deleting it stops deliveries.
    let r = s
        .http
        .delete(s.url(&format!("/webhooks/{hid}")))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    expect_problem(
        s.get(&format!("/webhooks/{hid}/deliveries")).await,
        404,
        "not_found",
    )
    .await;
}

/// A source server on a free loopback port: `/img.jpg`, redirects to private and metadata
/// addresses, a redirect loop, an oversized body and a slow answer. Returns its port.
async fn source_server(img: Vec<u8>) -> u16 {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let redirect = |to: &'static str| {
        move || async move { (StatusCode::FOUND, [(header::LOCATION, to)]).into_response() }
    };
    let app = axum::Router::new()
        .route(
            "/img.jpg",
            axum::routing::get(move || {
                let img = img.clone();
                async move { ([(header::CONTENT_TYPE, "image/jpeg")], img).into_response() }
            }),
        )
        .route(
            "/to-private",
            axum::routing::get(redirect("http://10.0.0.1/x.jpg")),
        )
        .route(
            "/to-metadata",
            axum::routing::get(redirect("http://169.254.169.254/latest/meta-data/")),
        )
        .route("/loop", axum::routing::get(redirect("/loop")))
        .route("/to-img", axum::routing::get(redirect("/img.jpg")))
        .route(
            "/big",
            axum::routing::get(|| async { vec![0xffu8; 300_000].into_response() }),
        )
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(15)).await;
                "late".into_response()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

async fn url_job(s: &Server, url: &str) -> Value {
    let j = s
        .submit(json!({"job_type": "thumbnail", "source_url": url, "params": {"width": 16, "height": 16}}))
        .await;
    s.wait_job(j["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await
}

#[tokio::test]
async fn source_urls_to_loopback_private_link_local_and_metadata_addresses_are_refused() {
    let port = source_server(jpeg(64, 48)).await;
    let s = Server::start().await;
    for url in [
        format!("http://127.0.0.1:{port}/img.jpg"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        // A DNS name that resolves to a loopback address.
        format!("http://localhost:{port}/img.jpg"),
        format!("http://[::1]:{port}/img.jpg"),
        format!("http://[::ffff:127.0.0.1]:{port}/img.jpg"),
        "http://10.0.0.1/x.jpg".to_owned(),
        "http://192.168.1.1/x.jpg".to_owned(),
        "http://0.0.0.0/x.jpg".to_owned(),
    ] {
        let j = url_job(&s, &url).await;
        assert_eq!(j["status"], "failed", "{url}: {j}");
        assert_eq!(j["error_code"], "source_url_refused", "{url}: {j}");
        assert_eq!(j["attempts"], 1, "refusals are permanent: {j}");
        assert_eq!(j["source_url"], url.as_str());
    }
    // Malformed sources are refused at submit.
    let up = s.upload_ready(jpeg(64, 48), "image/jpeg").await;
    for body in [
        json!({"job_type": "thumbnail", "source_url": "ftp://example.com/x.jpg", "params": {"width": 8, "height": 8}}),
        json!({"job_type": "thumbnail", "source_url": "http://user:pw@example.com/x.jpg", "params": {"width": 8, "height": 8}}),
        json!({"job_type": "thumbnail", "source_url": format!("http://example.com/{}", "a".repeat(2048)), "params": {"width": 8, "height": 8}}),
        json!({"job_type": "thumbnail", "source_url": "http://example.com/x.jpg", "upload_id": up, "params": {"width": 8, "height": 8}}),
    ] {
        expect_problem(s.post("/jobs", body).await, 422, "invalid_request").await;
    }
}

#[tokio::test]
async fn source_urls_are_fetched_within_caps_and_every_redirect_is_checked() {
    let port = source_server(jpeg(64, 48)).await;
    // The source server is on loopback: only it is allow-listed.
    let s = Server::start_with(
        Opts::default()
            .env("PHOTO_API_SOURCE_URL_ALLOW", "127.0.0.1/32")
            // Generous for four redirects of a debug build on a loaded machine; /slow takes 15 s.
            .env("PHOTO_API_SOURCE_URL_TIMEOUT", "4s")
            .env("PHOTO_API_MAX_ATTEMPTS", "1")
            .env("MAX_UPLOAD_SIZE", "200000"),
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let ok = url_job(&s, &format!("{base}/img.jpg")).await;
    assert_eq!(ok["status"], "completed", "{ok}");
    let (status, ct, body) = download(ok["outputs"][0]["url"].as_str().unwrap()).await;
    assert_eq!((status, ct.as_str()), (200, "image/jpeg"));
    assert!(image::load_from_memory(&body).is_ok());
    let via = url_job(&s, &format!("{base}/to-img")).await;
    assert_eq!(
        via["status"], "completed",
        "an allowed redirect is followed: {via}"
    );

    for (path, code) in [
        ("/to-private", "source_url_refused"),
        ("/to-metadata", "source_url_refused"),
        ("/loop", "source_url_refused"),
        ("/big", "image_too_large"),
    ] {
        let j = url_job(&s, &format!("{base}{path}")).await;
        assert_eq!(j["status"], "failed", "{path}: {j}");
        assert_eq!(j["error_code"], code, "{path}: {j}");
    }
    let j = url_job(&s, &format!("{base}/slow")).await;
    assert_eq!(
        j["status"], "dead",
        "a fetch past its time cap is a transient failure: {j}"
    );
    assert_eq!(j["error_code"], "source_fetch_failed", "{j}");
    // Other loopback ports are the same block: allowed; other private blocks are not.
    let j = url_job(&s, "http://10.0.0.1/x.jpg").await;
    assert_eq!(j["error_code"], "source_url_refused", "{j}");
}

#[tokio::test]
async fn every_route_of_issue_8_is_in_the_openapi_document() {
    let s = Server::start().await;
    let doc: Value = reqwest::get(s.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/jobs/{job_id}/cancel", "post"),
        ("/jobs/{job_id}/retry", "post"),
        ("/jobs/redrive", "post"),
        ("/jobs/{job_id}/events", "get"),
        ("/events", "get"),
        ("/batches", "post"),
        ("/batches/{batch_id}", "get"),
        ("/batches/{batch_id}/jobs", "get"),
        ("/batches/{batch_id}/cancel", "post"),
        ("/webhooks", "post"),
        ("/webhooks", "get"),
        ("/webhooks/{webhook_id}", "delete"),
        ("/webhooks/{webhook_id}/deliveries", "get"),
    ] {
        let op = &paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} documented"))[method];
        assert!(op.is_object(), "{method} {path} documented");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} has responses"
        );
    }
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"].to_string();
    for code in [
        "job_not_cancellable",
        "job_not_retryable",
        "idempotency_key_reused",
        "idempotency_key_in_progress",
        "batch_too_large",
    ] {
        assert!(
            codes.contains(code),
            "{code} in the ErrorCode schema: {codes}"
        );
    }
    let params = doc["paths"]["/jobs"]["post"]["parameters"].to_string();
    assert!(params.contains("Idempotency-Key"), "{params}");
    // The job kinds, presets and batch events of this issue are documented too.
    let schemas = &doc["components"]["schemas"];
    for name in [
        "VariantsParams",
        "VariantParams",
        "AnalyzeParams",
        "AnalyzeResult",
        "EagerJob",
        "QueuedJob",
    ] {
        assert!(schemas[name].is_object(), "schema {name}");
    }
    let kinds = schemas["JobType"].to_string();
    assert!(
        kinds.contains("variants") && kinds.contains("analyze"),
        "{kinds}"
    );
    for (schema, field) in [
        ("InitRequest", "preset"),
        ("InitRequest", "jobs"),
        ("JobView", "result"),
        ("UploadView", "jobs"),
        ("BatchView", "outcome"),
        ("BatchView", "finished_at"),
    ] {
        assert!(
            schemas[schema]["properties"][field].is_object(),
            "{schema}.{field}: {}",
            schemas[schema]
        );
    }
    let hooks = schemas["CreateWebhook"].to_string();
    assert!(
        hooks.contains("batch.completed") && hooks.contains("batch.failed"),
        "{hooks}"
    );
}

#[tokio::test]
async fn finished_jobs_and_their_outputs_are_swept_after_their_ttl() {
    let s = Server::start_with(
        Opts::default()
            .env("PHOTO_API_JOB_TTL", "2s")
            .env("PHOTO_API_SWEEP_INTERVAL", "300ms"),
    )
    .await;
    let up = s.upload_ready(jpeg(64, 48), "image/jpeg").await;
    let j = s
        .submit(json!({"job_type": "thumbnail", "upload_id": up, "params": {"width": 16, "height": 16}}))
        .await;
    let jid = j["job_id"].as_str().unwrap().to_owned();
    let done = s.wait_job(&jid, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed");
    let key = done["outputs"][0]["key"].as_str().unwrap().to_owned();
    let path = processed_object_path(&s.data_dir, &key);
    assert!(path.exists(), "the output is stored");
    // Kept within the TTL…
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(s.get(&format!("/jobs/{jid}")).await.status(), 200);
    // …then the row, its history and its output go.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = s.get(&format!("/jobs/{jid}")).await;
        if r.status() == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "the job was never swept");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!path.exists(), "its output is gone");
    let all: Value = s.get("/jobs").await.json().await.unwrap();
    assert!(all["jobs"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn webhooks_to_non_public_addresses_are_refused_without_retries() {
    let s = Server::start_with(Opts::default().env("PHOTO_API_WEBHOOK_RETRY_BASE", "100ms")).await;
    let (url, got) = receiver(0).await;
    let mut hooks = Vec::new();
    for u in [url.as_str(), "http://169.254.169.254/latest/meta-data/"] {
        let h: Value = s
            .post(
                "/webhooks",
                json!({"url": u, "event_types": ["job.completed"]}),
            )
            .await
            .json()
            .await
            .unwrap();
        hooks.push(h["webhook_id"].as_str().unwrap().to_owned());
    }
    let up = s.upload_ready(jpeg(64, 48), "image/jpeg").await;
    let j = s
        .submit(
            json!({"job_type": "thumbnail", "upload_id": up, "params": {"width": 8, "height": 8}}),
        )
        .await;
    s.wait_job(j["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    for hid in &hooks {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ds: Value = s
                .get(&format!("/webhooks/{hid}/deliveries"))
                .await
                .json()
                .await
                .unwrap();
            if ds[0]["status"] == "failed" {
                assert_eq!(ds[0]["attempts"], 1, "refused at once, never retried: {ds}");
                assert!(
                    ds[0]["last_error"].as_str().unwrap().contains("refused"),
                    "{ds}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "never refused: {ds}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        got.0.lock().unwrap().is_empty(),
        "nothing reached the loopback receiver"
    );
}

// ------------------------------------------------------------ job kinds: variants and analyze

/// An upload's processed objects on disk, under its job's output prefix.
fn job_output_files(s: &Server, key: &str) -> Vec<String> {
    let dir = processed_object_path(&s.data_dir, key);
    let dir = dir.parent().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn variants_jobs_render_named_sizes_and_formats_under_deterministic_keys() {
    let s = Server::start().await;
    // Large enough that the one decode shrinks on load (the largest box is 100 wide).
    let up = s.upload_ready(jpeg(800, 600), "image/jpeg").await;
    let many: Vec<Value> = (0..17)
        .map(|i| json!({"name": format!("v{i}"), "width": 8}))
        .collect();
    for bad in [
        json!({"variants": []}),
        json!({"variants": many}),
        json!({"variants": [{"name": "a", "width": 8}, {"name": "a", "width": 9}]}),
        json!({"variants": [{"name": "../x", "width": 8}]}),
        json!({"variants": [{"name": "a", "width": 8, "fit": "cover"}]}),
        json!({"variants": [{"name": "a", "width": 8, "format": "bmp"}]}),
        json!({"variants": [{"name": "a"}]}),
        json!({"sizes": [1]}),
    ] {
        expect_problem(
            s.post(
                "/jobs",
                json!({"job_type": "variants", "upload_id": up, "params": bad}),
            )
            .await,
            422,
            "invalid_parameters",
        )
        .await;
    }
    let j = s
        .submit(
            json!({"job_type": "variants", "upload_id": up, "params": {"variants": [
                {"name": "small", "width": 40, "format": "webp", "quality": 70},
                {"name": "square", "width": 32, "height": 32, "fit": "cover", "format": "png"},
                {"name": "large", "width": 100, "quality": 90},
            ]}}),
        )
        .await;
    let id = j["job_id"].as_str().unwrap().to_owned();
    assert_eq!(j["job_type"], "variants");
    let done = s.wait_job(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let outs = done["outputs"].as_array().unwrap();
    let want = [
        (
            "small",
            "webp",
            "image/webp",
            (40, 30),
            image::ImageFormat::WebP,
        ),
        (
            "square",
            "png",
            "image/png",
            (32, 32),
            image::ImageFormat::Png,
        ),
        (
            "large",
            "jpg",
            "image/jpeg",
            (100, 75),
            image::ImageFormat::Jpeg,
        ),
    ];
    assert_eq!(outs.len(), want.len(), "{done}");
    for (o, (name, ext, ct, (w, h), fmt)) in outs.iter().zip(want) {
        assert_eq!(o["name"], name, "{o}");
        let key = o["key"].as_str().unwrap();
        assert!(
            key.ends_with(&format!("/jobs/{id}/{name}.{ext}")),
            "deterministic key {key}"
        );
        assert_eq!(
            (
                o["content_type"].as_str(),
                o["width"].as_u64(),
                o["height"].as_u64()
            ),
            (Some(ct), Some(u64::from(w)), Some(u64::from(h)))
        );
        let (status, got_ct, body) = download(o["url"].as_str().unwrap()).await;
        assert_eq!((status, got_ct.as_str()), (200, ct));
        assert_eq!(o["size"].as_u64(), Some(body.len() as u64));
        assert_eq!(image::guess_format(&body).unwrap(), fmt);
        let img = image::load_from_memory(&body).unwrap();
        assert_eq!((img.width(), img.height()), (w, h), "{name}");
    }
    // One object per variant, nothing else, under the job's prefix.
    assert_eq!(
        job_output_files(&s, outs[0]["key"].as_str().unwrap()),
        ["large.jpg", "small.webp", "square.png"]
    );
}

/// One TIFF IFD entry: tag, type, count, value bytes (big-endian).
type IfdEntry = (u16, u16, u32, Vec<u8>);

/// Appends an IFD that starts at `out.len()` (offsets are from the TIFF start).
fn write_ifd(out: &mut Vec<u8>, entries: &[IfdEntry]) {
    let start = out.len();
    let mut data_off = start + 2 + 12 * entries.len() + 4;
    let mut data = Vec::new();
    out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    for (tag, ty, count, value) in entries {
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        if value.len() <= 4 {
            let mut v = value.clone();
            v.resize(4, 0);
            out.extend_from_slice(&v);
        } else {
            out.extend_from_slice(&(data_off as u32).to_be_bytes());
            data.extend_from_slice(value);
            data_off += value.len();
        }
    }
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&data);
}

fn ifd_size(entries: &[IfdEntry]) -> usize {
    2 + 12 * entries.len()
        + 4
        + entries
            .iter()
            .map(|e| if e.3.len() > 4 { e.3.len() } else { 0 })
            .sum::<usize>()
}

/// A JPEG whose EXIF names the camera and carries a GPS position (the Eiffel Tower: 48°51'29.88"
/// N, 2°17'40.20" E, 35 m).
fn jpeg_with_gps(w: u32, h: u32) -> Vec<u8> {
    let ascii = |tag: u16, s: &str| -> IfdEntry {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        (tag, 2, v.len() as u32, v)
    };
    let rationals = |tag: u16, vals: &[(u32, u32)]| -> IfdEntry {
        let mut v = Vec::new();
        for (n, d) in vals {
            v.extend_from_slice(&n.to_be_bytes());
            v.extend_from_slice(&d.to_be_bytes());
        }
        (tag, 5, vals.len() as u32, v)
    };
    let gps = vec![
        ascii(0x0001, "N"),
        rationals(0x0002, &[(48, 1), (51, 1), (2988, 100)]),
        ascii(0x0003, "E"),
        rationals(0x0004, &[(2, 1), (17, 1), (4020, 100)]),
        (0x0005, 1, 1, vec![0]),
        rationals(0x0006, &[(35, 1)]),
    ];
    let ifd0 = |gps_off: u32| {
        vec![
            ascii(0x010F, "Canon"),
            ascii(0x0110, "Canon EOS R6"),
            (0x8825, 4, 1, gps_off.to_be_bytes().to_vec()),
        ]
    };
    let gps_off = 8 + ifd_size(&ifd0(0));
    let mut tiff = b"MM\x00\x2A".to_vec();
    tiff.extend_from_slice(&8u32.to_be_bytes());
    write_ifd(&mut tiff, &ifd0(gps_off as u32));
    assert_eq!(tiff.len(), gps_off);
    write_ifd(&mut tiff, &gps);
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend_from_slice(&tiff);
    let plain = jpeg(w, h);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&plain[2..]);
    out
}

#[tokio::test]
async fn analyze_jobs_record_a_report_with_gps_only_when_asked() {
    let s = Server::start().await;
    let bytes = jpeg_with_gps(64, 48);
    let up = s.upload_ready(bytes.clone(), "image/jpeg").await;
    for bad in [
        json!({"dominant_colors": 0}),
        json!({"dominant_colors": 9}),
        json!({"keep_gps": "yes"}),
        json!({"gps": true}),
    ] {
        expect_problem(
            s.post(
                "/jobs",
                json!({"job_type": "analyze", "upload_id": up, "params": bad}),
            )
            .await,
            422,
            "invalid_parameters",
        )
        .await;
    }
    let plain = s
        .submit(json!({"job_type": "analyze", "upload_id": up}))
        .await;
    let gps = s
        .submit(json!({"job_type": "analyze", "upload_id": up, "params": {"keep_gps": true, "dominant_colors": 3}}))
        .await;
    let plain = s
        .wait_job(plain["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    let gps = s
        .wait_job(gps["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    for j in [&plain, &gps] {
        assert_eq!(j["status"], "completed", "{j}");
        assert_eq!(j["outputs"], json!([]), "a report, no files: {j}");
        let r = &j["result"];
        // Checked against what the test itself knows: the bytes it sent and the image it made.
        use sha2::Digest;
        assert_eq!(
            r["sha256"],
            hex::encode(sha2::Sha256::digest(&bytes)),
            "{r}"
        );
        assert_eq!(
            (r["width"].as_u64(), r["height"].as_u64()),
            (Some(64), Some(48))
        );
        assert_eq!(
            (r["format"].as_str(), r["content_type"].as_str()),
            (Some("jpeg"), Some("image/jpeg"))
        );
        assert_eq!(
            (r["frames"].as_u64(), r["has_alpha"].as_bool()),
            (Some(1), Some(false))
        );
        assert_eq!(r["exif"]["make"], "Canon", "{r}");
        assert_eq!(r["exif"]["model"], "Canon EOS R6", "{r}");
        // 4×3 components for a landscape image: 1 + 1 + 4 + 2·11 characters.
        let bh = r["blurhash"].as_str().unwrap();
        assert_eq!(bh.len(), 28, "{bh}");
        let dh = r["dhash"].as_str().unwrap();
        assert!(
            dh.len() == 16 && dh.chars().all(|c| c.is_ascii_hexdigit()),
            "{dh}"
        );
        let colours = r["dominant_colors"].as_array().unwrap();
        assert!(!colours.is_empty());
        let share: f64 = colours
            .iter()
            .map(|c| c["fraction"].as_f64().unwrap())
            .sum();
        assert!((share - 1.0).abs() < 0.01, "{colours:?}");
        for c in colours {
            let hex = c["hex"].as_str().unwrap();
            let rgb: Vec<u64> = c["rgb"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(hex, format!("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2]));
        }
    }
    assert!(plain["result"]["dominant_colors"].as_array().unwrap().len() <= 5);
    assert!(gps["result"]["dominant_colors"].as_array().unwrap().len() <= 3);
    // GPS: removed by default — not a null, not a trace — and there when asked.
    let text = plain["result"].to_string();
    assert!(plain["result"]["exif"].get("gps").is_none(), "{text}");
    assert!(!text.contains("gps") && !text.contains("48.85"), "{text}");
    let pos = &gps["result"]["exif"]["gps"];
    assert!(
        (pos["latitude"].as_f64().unwrap() - 48.8583).abs() < 1e-3,
        "{pos}"
    );
    assert!(
        (pos["longitude"].as_f64().unwrap() - 2.2945).abs() < 1e-3,
        "{pos}"
    );
    assert_eq!(pos["altitude_m"], 35.0);
    // The analysis is the same either way otherwise.
    for k in ["sha256", "blurhash", "dhash"] {
        assert_eq!(plain["result"][k], gps["result"][k], "{k}");
    }
}

// ------------------------------------------------------------ presets (eager jobs at upload)

/// `POST /uploads/init` with `extra` fields, then the bytes; returns the upload id (not yet
/// completed).
async fn upload_with(s: &Server, bytes: Vec<u8>, extra: Value) -> String {
    let mut body = json!({"content_type": "image/jpeg", "max_bytes": bytes.len()});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = s.post("/uploads/init", body).await;
    assert_eq!(r.status(), 201, "init: {}", r.text().await.unwrap());
    let init: Value = r.json().await.unwrap();
    let sent = s.send_upload(&init, bytes, "image/jpeg").await;
    assert!(sent.status().is_success(), "{}", sent.text().await.unwrap());
    init["upload_id"].as_str().unwrap().to_owned()
}

/// The ids and types of the jobs a completion answer lists.
fn queued(v: &Value) -> Vec<(String, String)> {
    v.get("jobs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|j| {
                    (
                        j["job_id"].as_str().unwrap().to_owned(),
                        j["job_type"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn jobs_of_upload(s: &Server, up: &str) -> Vec<Value> {
    let v: Value = s.get("/jobs?limit=200").await.json().await.unwrap();
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["upload_id"] == up)
        .cloned()
        .collect()
}

#[tokio::test]
async fn presets_queue_their_jobs_once_when_an_upload_completes_however_often() {
    let presets = json!({
        "web": [
            {"job_type": "variants", "params": {"variants": [
                {"name": "small", "width": 32, "format": "webp"},
                {"name": "medium", "width": 48}
            ]}},
            {"job_type": "analyze"}
        ],
        "thumbs": [{"job_type": "thumbnail", "params": {"width": 16, "height": 16}}]
    });
    let s = Server::start_with(
        Opts::default()
            .env("PHOTO_API_PRESETS", &presets.to_string())
            .env("PHOTO_API_DEFAULT_PRESET", "thumbs"),
    )
    .await;

    // A named preset: completing four times at once, then again, queues its two jobs once.
    let up = upload_with(&s, jpeg(64, 48), json!({"preset": "web"})).await;
    let answers = futures_util::future::join_all((0..4).map(|_| s.complete(&up))).await;
    let mut lists = Vec::new();
    for r in answers {
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], "ready", "{v}");
        lists.push(queued(&v));
    }
    let again: Value = s.complete(&up).await.json().await.unwrap();
    lists.push(queued(&again));
    let first = lists[0].clone();
    assert_eq!(
        first.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
        ["variants", "analyze"]
    );
    assert!(
        lists.iter().all(|l| *l == first),
        "the same jobs every time: {lists:?}"
    );
    let got: Value = s.get(&format!("/uploads/{up}")).await.json().await.unwrap();
    assert_eq!(queued(&got), first, "GET /uploads shows them too");
    for (id, _) in &first {
        let j = s.wait_job(id, Duration::from_secs(60)).await;
        assert_eq!(j["status"], "completed", "{j}");
        assert_eq!(j["upload_id"], up.as_str());
    }
    assert_eq!(jobs_of_upload(&s, &up).await.len(), 2, "queued once");
    let variants = s.job(&first[0].0).await;
    let names: Vec<&str> = variants["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["small", "medium"]);
    assert_eq!(s.job(&first[1].0).await["result"]["width"], 64);

    // No choice: the default preset. `jobs` given: those. `jobs: []`: none.
    let default = upload_with(&s, jpeg(40, 30), json!({})).await;
    let v: Value = s.complete(&default).await.json().await.unwrap();
    let q = queued(&v);
    assert_eq!(
        q.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
        ["thumbnail"]
    );
    let own = upload_with(
        &s,
        jpeg(40, 30),
        json!({"jobs": [{"job_type": "analyze", "params": {"keep_gps": true}}]}),
    )
    .await;
    let v: Value = s.complete(&own).await.json().await.unwrap();
    let q2 = queued(&v);
    assert_eq!(
        q2.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
        ["analyze"]
    );
    let none = upload_with(&s, jpeg(40, 30), json!({"jobs": []})).await;
    let v: Value = s.complete(&none).await.json().await.unwrap();
    assert!(v.get("jobs").is_none(), "{v}");
    for (id, _) in q.iter().chain(&q2) {
        assert_eq!(
            s.wait_job(id, Duration::from_secs(60)).await["status"],
            "completed"
        );
    }
    assert!(jobs_of_upload(&s, &none).await.is_empty());

    // Bad choices are refused at init, before anything is stored.
    let nine: Vec<Value> = (0..9).map(|_| json!({"job_type": "analyze"})).collect();
    for (extra, code) in [
        (json!({"preset": "nope"}), "invalid_parameters"),
        (json!({"preset": "web", "jobs": []}), "invalid_request"),
        (json!({"jobs": nine}), "invalid_parameters"),
        (
            json!({"jobs": [{"job_type": "sepia"}]}),
            "invalid_parameters",
        ),
        (
            json!({"jobs": [{"job_type": "thumbnail", "params": {"width": 0, "height": 1}}]}),
            "invalid_parameters",
        ),
        (
            json!({"jobs": [{"job_type": "analyze", "upload_id": "x"}]}),
            "invalid_request",
        ),
    ] {
        let mut body = json!({"content_type": "image/jpeg", "max_bytes": 1000});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = s.post("/uploads/init", body).await;
        expect_problem(r, 422, code).await;
    }
}

// ------------------------------------------------------------ batch webhook events

#[tokio::test]
async fn batch_webhooks_are_delivered_once_per_batch_with_their_counts() {
    let s = Server::start_with(
        Opts::default()
            .env("PHOTO_API_WEBHOOK_RETRY_BASE", "200ms")
            .env("PHOTO_API_SOURCE_URL_ALLOW", "127.0.0.1/32")
            .env("PHOTO_API_WORKER_CONCURRENCY", "4"),
    )
    .await;
    // Down for its first request: a batch event is retried like any other.
    let (url, got) = receiver(1).await;
    let r = s
        .post(
            "/webhooks",
            json!({"url": url, "event_types": ["batch.completed", "batch.failed"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let hook: Value = r.json().await.unwrap();
    let secret = hook["secret"].as_str().unwrap().to_owned();

    let good = s.upload_ready(jpeg(48, 36), "image/jpeg").await;
    // An upload whose raw object is gone: its jobs fail permanently (source_missing).
    let init = s.init_upload("image/jpeg", 100_000).await;
    assert!(
        s.send_upload(&init, jpeg(48, 36), "image/jpeg")
            .await
            .status()
            .is_success()
    );
    let bad = init["upload_id"].as_str().unwrap().to_owned();
    assert_eq!(s.complete(&bad).await.status(), 200);
    std::fs::remove_file(raw_object_path(&s.data_dir, init["key"].as_str().unwrap())).unwrap();

    let batch = |items: Vec<&str>| {
        let items: Vec<Value> = items.iter().map(|u| json!({"upload_id": u})).collect();
        json!({"job_type": "thumbnail", "params": {"width": 16, "height": 16}, "items": items})
    };
    let mut ids = Vec::new();
    for body in [
        batch(vec![good.as_str(); 6]),
        batch(vec![good.as_str(), bad.as_str(), good.as_str()]),
    ] {
        let r = s.post("/batches", body).await;
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        ids.push(v["batch_id"].as_str().unwrap().to_owned());
    }
    let accepted = |g: &Received| g.0.lock().unwrap().iter().filter(|r| r.2 == 200).count();
    let deadline = Instant::now() + Duration::from_secs(90);
    while accepted(&got) < 2 {
        assert!(Instant::now() < deadline, "batch events never got through");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing more arrives: one event per batch, however many jobs finished at once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = got.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "one refused attempt, two deliveries");
    let mut by_batch = std::collections::HashMap::new();
    for (headers, body, status) in &seen {
        assert!(verify_signature(&secret, headers, body), "signed");
        if *status == 200 {
            let v: Value = serde_json::from_str(body).unwrap();
            let bid = v["data"]["batch_id"].as_str().unwrap().to_owned();
            assert!(by_batch.insert(bid, v).is_none(), "one delivery per batch");
        }
    }
    let ok = &by_batch[&ids[0]];
    assert_eq!(ok["type"], "batch.completed", "{ok}");
    assert_eq!(ok["data"]["status"], "completed");
    assert_eq!(ok["data"]["total"], 6);
    assert_eq!(
        ok["data"]["counts"],
        json!({"completed": 6, "failed": 0, "dead": 0, "cancelled": 0})
    );
    let failed = &by_batch[&ids[1]];
    assert_eq!(failed["type"], "batch.failed", "{failed}");
    assert_eq!(failed["data"]["total"], 3);
    assert_eq!(
        failed["data"]["counts"],
        json!({"completed": 2, "failed": 1, "dead": 0, "cancelled": 0})
    );
    for (bid, outcome) in [(&ids[0], "completed"), (&ids[1], "failed")] {
        let b: Value = s
            .get(&format!("/batches/{bid}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(b["done"], true, "{b}");
        assert_eq!(b["outcome"], outcome, "{b}");
        assert!(b["finished_at"].is_string(), "{b}");
    }
}
