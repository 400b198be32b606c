//! Jobs survive crashes: kill -9 of the server mid-work, and a worker that stops heartbeating.
#![expect(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn kill_9_mid_work_then_restart_completes_every_job_exactly_once() {
    let dir = tempdir();
    let opts = Opts {
        data_dir: Some(dir.clone()),
        ..Opts::default()
    }
    .env("PHOTO_API_JOB_LEASE", "2s")
    .env("PHOTO_API_WORKER_CONCURRENCY", "2");
    let mut first = Server::start_with(opts.clone()).await;
    let photo = jpeg(2400, 1600);
    let id = first.upload_ready(photo, "image/jpeg").await;
    let mut expected: HashMap<String, (u64, u64)> = HashMap::new();
    for i in 0..24u32 {
        let (body, dims) = if i % 2 == 0 {
            (
                json!({"job_type": "thumbnail", "upload_id": id,
                "params": {"width": 200 + i, "height": 200 + i, "format": "png"}}),
                (200 + i, (f64::from(200 + i) * 2.0 / 3.0).round() as u32),
            )
        } else {
            (
                json!({"job_type": "transform", "upload_id": id,
                "params": {"width": 300 + i, "height": 300 + i, "fit": "fill", "format": "jpeg"}}),
                (300 + i, 300 + i),
            )
        };
        let j = first.submit(body).await;
        expected.insert(
            j["job_id"].as_str().unwrap().to_owned(),
            (u64::from(dims.0), u64::from(dims.1)),
        );
    }
    // Kill while a worker holds a job, after some jobs completed.
    let deadline = Instant::now() + Duration::from_secs(120);
    let in_flight = loop {
        let started = jobs_in(&first, "started").await;
        let completed = jobs_in(&first, "completed").await;
        if completed.len() >= 2 && !started.is_empty() {
            break started;
        }
        assert!(Instant::now() < deadline, "workers made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    first.kill9();
    let interrupted: Vec<String> = in_flight
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_owned())
        .collect();

    let key = first.key.clone();
    let second = Server::start_with(Opts {
        key: Some(key),
        ..opts
    })
    .await;
    for (job_id, (w, h)) in &expected {
        let j = second.wait_job(job_id, Duration::from_secs(180)).await;
        assert_eq!(j["status"], "completed", "{j}");
        assert_eq!(
            history_count(&j, "completed"),
            1,
            "completed exactly once: {j}"
        );
        let out = &j["outputs"][0];
        assert_eq!(
            (
                out["width"].as_u64().unwrap(),
                out["height"].as_u64().unwrap()
            ),
            (*w, *h),
            "{j}"
        );
        let (status, _, bytes) = download(out["url"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(
            bytes.len() as u64,
            out["size"].as_u64().unwrap(),
            "output intact"
        );
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((u64::from(img.width()), u64::from(img.height())), (*w, *h));
    }
    // The jobs that were running at the kill were taken over after their lease expired. The
    // snapshot above can be a few milliseconds stale (a job may finish between the poll and the
    // kill, and its worker claims the next one at once), so look at every job, not only it.
    let mut retried = Vec::new();
    for id in expected.keys() {
        let j = second.job(id).await;
        let attempts = j["attempts"].as_u64().unwrap();
        if j["engine"] == "temporal" {
            // Temporal counts an activity attempt from its dispatch: a worker killed before the
            // attempt recorded its start in job_logs leaves a counted attempt with no `started`.
            assert!(
                history_count(&j, "started") <= attempts as usize,
                "no attempt started twice: {j}"
            );
        } else {
            assert_eq!(
                history_count(&j, "started"),
                attempts as usize,
                "every attempt started once: {j}"
            );
        }
        if attempts >= 2 {
            retried.push(id.clone());
        }
    }
    assert!(
        !retried.is_empty(),
        "a job interrupted by the kill was re-run (in flight at the poll: {interrupted:?})"
    );
}

fn spawn_worker(data_dir: &std::path::Path, name: &str) -> Child {
    let mut c = command(data_dir);
    c.arg("worker")
        .env("PHOTO_API_JOB_LEASE", "2s")
        .env("PHOTO_API_WORKER_CONCURRENCY", "1")
        .env("HOSTNAME_HINT", name)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c.spawn().unwrap()
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        signal(self.0.id(), "CONT");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_worker_that_stops_heartbeating_loses_its_job_to_another() {
    let s = Server::start_with(
        Opts::default()
            .arg("--worker-mode")
            .arg("none")
            .env("MAX_UPLOAD_SIZE", "60MB"),
    )
    .await;
    // A large noisy image re-encoded as PNG takes seconds: a wide window to freeze the worker.
    let id = s.upload_ready(noisy_jpeg(4000, 3000), "image/jpeg").await;
    let a = KillOnDrop(spawn_worker(&s.data_dir, "a"));
    let job = s
        .submit(json!({"job_type": "transform", "upload_id": id, "params": {"format": "png"}}))
        .await;
    let jid = job["job_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let owner_a = loop {
        let j = s.job(&jid).await;
        if j["status"] == "started" {
            break j["worker"].as_str().unwrap().to_owned();
        }
        assert_ne!(
            j["status"], "completed",
            "finished before the worker could be frozen"
        );
        assert!(Instant::now() < deadline, "worker A never claimed the job");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Freeze A: no heartbeats, no progress.
    signal(a.0.id(), "STOP");
    assert!(
        owner_a.contains(&format!(":{}:", a.0.id())),
        "A holds the lease: {owner_a}"
    );
    let b = KillOnDrop(spawn_worker(&s.data_dir, "b"));
    let done = s.wait_job(&jid, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["attempts"], 2,
        "B took it over as a second attempt: {done}"
    );
    assert_eq!(history_count(&done, "started"), 2);
    assert_eq!(history_count(&done, "completed"), 1);
    let url = done["outputs"][0]["url"].as_str().unwrap().to_owned();
    let (_, _, bytes) = download(&url).await;
    // Let A resume: it must not be able to record a result for a job it no longer owns.
    signal(a.0.id(), "CONT");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = s.job(&jid).await;
    assert_eq!(after["status"], "completed");
    assert_eq!(after["attempts"], 2);
    assert_eq!(
        after["history"], done["history"],
        "A's late result changed nothing"
    );
    let (_, _, bytes_after) = download(&url).await;
    assert_eq!(
        bytes_after.len(),
        bytes.len(),
        "output intact (deterministic key, same bytes)"
    );
    assert!(image::load_from_memory(&bytes_after).is_ok());
    drop(b);
}

#[tokio::test]
async fn a_crashing_worker_process_costs_one_attempt_and_never_the_api() {
    let s = Server::start_with(
        Opts::default()
            .env("PHOTO_API_JOB_LEASE", "2s")
            .env("MAX_UPLOAD_SIZE", "60MB"),
    )
    .await;
    let id = s.upload_ready(noisy_jpeg(4000, 3000), "image/jpeg").await;
    let job = s
        .submit(json!({"job_type": "transform", "upload_id": id, "params": {"format": "png"}}))
        .await;
    let jid = job["job_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let worker_pid: u32 = loop {
        let j = s.job(&jid).await;
        if j["status"] == "started" {
            // lease_owner is host:pid:name
            break j["worker"]
                .as_str()
                .unwrap()
                .split(':')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
        }
        assert!(Instant::now() < deadline, "never started: {j}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_ne!(
        worker_pid,
        s.child.id(),
        "the job runs in a separate worker process"
    );
    // What a codec crash does to the process: it dies at once.
    signal(worker_pid, "KILL");
    let r = reqwest::get(s.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), 200, "the API is unaffected");
    let done = s.wait_job(&jid, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["attempts"], 2,
        "the crash cost exactly one attempt: {done}"
    );
    let h: Value = reqwest::get(s.url("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        h["checks"]["workers"]["status"], "up",
        "the supervisor restarted the worker: {h}"
    );
}

#[tokio::test]
async fn the_sweeper_expires_raw_uploads_and_uncompleted_uploads() {
    let s = Server::start_with(
        Opts::default()
            .env("PHOTO_API_RAW_TTL", "1s")
            .env("PHOTO_API_SWEEP_INTERVAL", "200ms")
            .arg("--worker-mode")
            .arg("none"),
    )
    .await;
    let ready = s.upload_ready(jpeg(32, 32), "image/jpeg").await;
    let never_completed = s.init_upload("image/jpeg", 10_000).await;
    let r = s
        .send_upload(&never_completed, jpeg(16, 16), "image/jpeg")
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let raw = |key: &str| raw_object_path(&s.data_dir, key);
    let never_key = never_completed["key"].as_str().unwrap().to_owned();
    assert!(raw(&never_key).exists());
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in [
        ready.as_str(),
        never_completed["upload_id"].as_str().unwrap(),
    ] {
        loop {
            let v: Value = s.get(&format!("/uploads/{id}")).await.json().await.unwrap();
            if v["status"] == "expired" {
                assert!(
                    !raw(v["key"].as_str().unwrap()).exists(),
                    "raw object deleted"
                );
                break;
            }
            assert!(Instant::now() < deadline, "upload {id} never expired: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let r = s
        .post("/jobs", json!({"job_type": "thumbnail", "upload_id": ready, "params": {"width": 8, "height": 8}}))
        .await;
    expect_problem(r, 409, "upload_not_ready").await;
}

#[tokio::test]
async fn retryable_failures_back_off_then_dead_letter_with_the_last_error() {
    // Every attempt exceeds the time limit: a retryable failure.
    let s = Server::start_with(
        Opts::default()
            .env("PHOTO_API_JOB_TIMEOUT", "1ms")
            .env("PHOTO_API_RETRY_BACKOFF", "300ms")
            .env("MAX_UPLOAD_SIZE", "60MB"),
    )
    .await;
    let id = s.upload_ready(jpeg(3000, 2000), "image/jpeg").await;
    let j = s
        .submit(json!({"job_type": "transform", "upload_id": id, "params": {"format": "png"}}))
        .await;
    let jid = j["job_id"].as_str().unwrap().to_owned();
    let mut saw_retrying = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let j = s.job(&jid).await;
        if j["status"] == "retrying" {
            saw_retrying = true;
            assert!(j["next_attempt_at"].is_string(), "{j}");
            assert_eq!(j["error_code"], "timeout");
        }
        if j["status"] == "dead" {
            break j;
        }
        assert!(Instant::now() < deadline, "never dead: {j}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(saw_retrying);
    assert_eq!(
        done["attempts"], 3,
        "dead after the default 3 attempts: {done}"
    );
    assert_eq!(done["error_code"], "timeout");
    assert!(
        done["error_message"]
            .as_str()
            .unwrap()
            .contains("time limit")
    );
    let statuses: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "submitted",
            "started",
            "retrying",
            "started",
            "retrying",
            "started",
            "dead"
        ]
    );
    // Backoff: each retry waited at least half the (doubling) delay.
    let at = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(done["history"][i]["at"].as_str().unwrap()).unwrap()
    };
    assert!(
        (at(3) - at(2)).num_milliseconds() >= 150,
        "first backoff ≥ 300ms/2"
    );
    assert!(
        (at(5) - at(4)).num_milliseconds() >= 300,
        "second backoff ≥ 600ms/2"
    );
    let dead: Value = s.get("/jobs?status=dead").await.json().await.unwrap();
    assert_eq!(
        dead["jobs"][0]["job_id"],
        jid.as_str(),
        "listed in the dead-letter filter"
    );
}

#[tokio::test]
async fn sigterm_releases_running_jobs_without_counting_an_attempt() {
    let dir = tempdir();
    let opts = Opts {
        data_dir: Some(dir.clone()),
        ..Opts::default()
    }
    .env("PHOTO_API_SHUTDOWN_GRACE", "100ms")
    .env("MAX_UPLOAD_SIZE", "60MB");
    let mut first = Server::start_with(opts.clone()).await;
    let id = first
        .upload_ready(noisy_jpeg(4000, 3000), "image/jpeg")
        .await;
    let j = first
        .submit(json!({"job_type": "transform", "upload_id": id, "params": {"format": "png"}}))
        .await;
    let jid = j["job_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while first.job(&jid).await["status"] != "started" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.signal("TERM");
    let status = first.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let second = Server::start_with(Opts {
        key: Some(first.key.clone()),
        ..opts
    })
    .await;
    let done = second.wait_job(&jid, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let statuses: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["submitted", "started", "submitted", "started", "completed"],
        "{done}"
    );
    // The engines differ here by design. The SQL queue owns the attempt counter, so a job
    // handed back at shutdown gives its attempt back. On Temporal the counter is Temporal's
    // activity attempt: the hand-back shows in our history (`submitted` again) but Temporal
    // still counted the interrupted attempt, so the next one is attempt 2.
    let expected_attempts = if temporal_engine() { 2 } else { 1 };
    assert_eq!(
        done["attempts"], expected_attempts,
        "a released job does not use up an attempt (SQL) / is the next Temporal attempt"
    );
}
