//! Workers on many hosts (issue 4): several `photo-api worker` processes share one PostgreSQL
//! queue and one S3 store. These tests always run on the production stack (PostgreSQL from
//! `PHOTO_API_TEST_POSTGRES`, an s3s-fs per test), whatever `PHOTO_API_TEST_BACKEND` says.
#![expect(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A `photo-api worker` process, killed when dropped.
struct WorkerProc {
    child: Child,
    log: PathBuf,
}

impl WorkerProc {
    fn spawn(data_dir: &Path, env: &[(&str, &str)], n: usize) -> WorkerProc {
        let log = data_dir.join(format!("worker-{n}.log"));
        let mut c = command(data_dir);
        c.arg("worker").envs(env.iter().copied());
        c.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        WorkerProc {
            child: c.spawn().unwrap(),
            log,
        }
    }

    fn completed_in_log(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter(|l| l.contains("job completed"))
            .count()
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn server(max_attempts: &str) -> Server {
    force_production();
    Server::start_with(
        Opts::default()
            .arg("--worker-mode")
            .arg("none")
            // A job's attempt budget is fixed when it is submitted.
            .env("PHOTO_API_MAX_ATTEMPTS", max_attempts),
    )
    .await
}

fn output(job: &Value) -> &Value {
    &job["outputs"][0]
}

#[tokio::test]
async fn three_workers_share_500_jobs_each_completed_exactly_once() {
    let s = server("3").await;
    let id = s.upload_ready(jpeg(320, 240), "image/jpeg").await;
    let env = [
        ("PHOTO_API_WORKER_CONCURRENCY", "2"),
        ("PHOTO_API_JOB_LEASE", "10s"),
        // The NOTIFY wake-up does the work; the poll is only a fallback.
        ("PHOTO_API_POLL_INTERVAL", "2s"),
    ];
    let workers: Vec<WorkerProc> = (0..3)
        .map(|n| WorkerProc::spawn(&s.data_dir, &env, n))
        .collect();
    let started = Instant::now();
    let mut jobs = Vec::new();
    for i in 0..500u32 {
        let (job_type, format) = match i % 3 {
            0 => ("thumbnail", "jpeg"),
            1 => ("transform", "png"),
            _ => ("transform", "webp"),
        };
        let w = 16 + i % 200;
        let j = s
            .submit(json!({"job_type": job_type, "upload_id": id,
                "params": {"width": w, "height": w, "format": format}}))
            .await;
        jobs.push((j["job_id"].as_str().unwrap().to_owned(), w));
    }
    for (n, (jid, w)) in jobs.iter().enumerate() {
        let j = s.wait_job(jid, Duration::from_secs(300)).await;
        assert_eq!(j["status"], "completed", "{j}");
        assert_eq!(j["attempts"], 1, "no crash, so one attempt: {j}");
        assert_eq!(history_count(&j, "started"), 1, "{j}");
        assert_eq!(history_count(&j, "completed"), 1, "{j}");
        let out = output(&j);
        assert_eq!(out["width"].as_u64().unwrap(), u64::from(*w));
        let stored = processed_object_path(&s.data_dir, out["key"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(&stored).unwrap().len(),
            out["size"].as_u64().unwrap(),
            "output present in the bucket: {j}"
        );
        if n % 50 == 0 {
            let (status, _, bytes) = download(out["url"].as_str().unwrap()).await;
            assert_eq!(status, 200);
            assert!(image::load_from_memory(&bytes).is_ok());
        }
    }
    let took = started.elapsed();
    // Every worker took part, and the completions they logged add up to exactly 500.
    let per_worker: Vec<usize> = workers.iter().map(WorkerProc::completed_in_log).collect();
    eprintln!("500 jobs on 3 workers in {took:?}: {per_worker:?}");
    assert!(per_worker.iter().all(|&n| n > 0), "{per_worker:?}");
    assert_eq!(per_worker.iter().sum::<usize>(), 500, "{per_worker:?}");
}

#[tokio::test]
async fn fifty_sigkills_of_lease_holders_during_200_jobs_lose_nothing() {
    // Kills can hit the same job repeatedly; no job may die of them.
    let s = server("60").await;
    let id = s.upload_ready(noisy_jpeg(1200, 900), "image/jpeg").await;
    let specs = [
        json!({"job_type": "transform", "params": {"width": 640, "format": "png"}}),
        json!({"job_type": "transform", "params": {"width": 500, "format": "jpeg", "quality": 80}}),
        json!({"job_type": "thumbnail", "params": {"width": 300, "height": 300, "format": "webp"}}),
        json!({"job_type": "transform", "params": {"width": 700, "height": 300, "fit": "cover", "format": "png"}}),
    ];
    let submit = |spec: &Value| {
        let mut body = spec.clone();
        body["upload_id"] = json!(id);
        body
    };
    let env = [
        ("PHOTO_API_WORKER_CONCURRENCY", "1"),
        ("PHOTO_API_JOB_LEASE", "1s"),
        ("PHOTO_API_RETRY_BACKOFF", "20ms"),
    ];
    let mut spawned = 0;
    let mut workers: Vec<WorkerProc> = Vec::new();
    let mut spawn = |workers: &mut Vec<WorkerProc>| {
        workers.push(WorkerProc::spawn(&s.data_dir, &env, spawned));
        spawned += 1;
    };
    spawn(&mut workers);

    // Reference outputs, made without any fault: the same spec must give the same bytes.
    let mut expected = Vec::new();
    let mut keys = BTreeSet::new();
    for spec in &specs {
        let j = s.submit(submit(spec)).await;
        let j = s
            .wait_job(j["job_id"].as_str().unwrap(), Duration::from_secs(120))
            .await;
        assert_eq!(j["status"], "completed", "{j}");
        keys.insert(output(&j)["key"].as_str().unwrap().to_owned());
        let (_, _, bytes) = download(output(&j)["url"].as_str().unwrap()).await;
        expected.push(hex(&Sha256::digest(&bytes)));
    }

    let mut jobs: Vec<(String, usize)> = Vec::new();
    for i in 0..200 {
        let j = s.submit(submit(&specs[i % specs.len()])).await;
        jobs.push((j["job_id"].as_str().unwrap().to_owned(), i % specs.len()));
    }
    spawn(&mut workers);
    spawn(&mut workers);

    // Fault injection: SIGKILL a worker while it holds a lease, 50 times.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut kills = 0;
    while kills < 50 {
        assert!(
            Instant::now() < deadline,
            "only {kills} kills landed in time"
        );
        let running = jobs_in(&s, "started").await;
        let victim = running.iter().find_map(|j| {
            let owner = j["worker"].as_str()?;
            let pid: u32 = owner.split(':').nth(1)?.parse().ok()?;
            let idx = workers.iter().position(|w| w.child.id() == pid)?;
            Some((j["job_id"].as_str()?.to_owned(), pid, idx))
        });
        let Some((jid, pid, idx)) = victim else {
            let queued = jobs_in(&s, "submitted").await.len() + jobs_in(&s, "retrying").await.len();
            assert!(
                queued > 0 || !running.is_empty(),
                "the work ran out after only {kills} kills"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // Check it still holds that lease right now, so the fault lands in the window.
        let now = s.job(&jid).await;
        if now["status"] != "started"
            || !now["worker"]
                .as_str()
                .unwrap_or("")
                .contains(&format!(":{pid}:"))
        {
            continue;
        }
        signal(pid, "KILL");
        let mut dead = workers.swap_remove(idx);
        let _ = dead.child.wait();
        kills += 1;
        spawn(&mut workers);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    let mut retried = 0;
    let mut extra_attempts = 0;
    for (jid, spec) in &jobs {
        let j = s.wait_job(jid, Duration::from_secs(300)).await;
        assert_eq!(j["status"], "completed", "{j}");
        assert_eq!(
            history_count(&j, "completed"),
            1,
            "completed exactly once: {j}"
        );
        let attempts = j["attempts"].as_u64().unwrap() as usize;
        assert_eq!(history_count(&j, "started"), attempts, "{j}");
        if attempts > 1 {
            retried += 1;
            extra_attempts += attempts - 1;
        }
        let out = output(&j);
        keys.insert(out["key"].as_str().unwrap().to_owned());
        let (status, _, bytes) = download(out["url"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(
            hex(&Sha256::digest(&bytes)),
            expected[*spec],
            "output of {jid} is byte-identical to the fault-free reference"
        );
    }
    eprintln!(
        "{kills} kills; {retried} of 200 jobs needed more than one attempt, {extra_attempts} extra attempts in all"
    );
    // Each kill that landed mid-job cost that job one attempt (a kill racing the job's own
    // completion costs nothing).
    assert!(
        extra_attempts >= 25,
        "most kills interrupted a job ({extra_attempts} extra attempts after {kills} kills)"
    );
    drop(workers);

    // The sweeper leaves no staging leftovers; no output exists that no job owns.
    let out = command(&s.data_dir)
        .arg("sweep")
        .env("PHOTO_API_STAGING_MAX_AGE", "1ms")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // s3s-fs removes the temporary file of a PUT whose client was SIGKILLed only once it notices
    // the dropped connection: give it a moment before calling a leftover a leftover.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !staging_empty(&s.data_dir) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        staging_empty(&s.data_dir),
        "no staging leftovers after the sweep"
    );
    let p = production().unwrap();
    let bucket = p.s3_root(&s.data_dir).join(p.bucket_processed(&s.data_dir));
    let stored: BTreeSet<String> = files_under(&bucket).into_iter().collect();
    assert_eq!(
        stored, keys,
        "exactly the outputs of the 204 jobs are stored"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn postgres_restart_during_load_loses_no_acknowledged_job() {
    force_production();
    let pg = PrivatePostgres::start();
    let s = Server::start_with(
        Opts::default()
            .env("DATABASE_URL", &pg.admin_url())
            .env("PHOTO_API_REQUEST_TIMEOUT", "5s")
            .env("PHOTO_API_WORKER_CONCURRENCY", "2"),
    )
    .await;
    let id = s.upload_ready(jpeg(200, 150), "image/jpeg").await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let submit = |w: u32| {
        client
            .post(s.url("/jobs"))
            .bearer_auth(&s.key)
            .json(&json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": w, "height": w}}))
            .send()
    };
    let mut acked = Vec::new();
    let mut unavailable = 0;
    let mut health_down = false;
    let phase = |acked: &Vec<(String, u32)>, unavailable| {
        format!("{} acked, {unavailable} × 503", acked.len())
    };
    // Load, outage, load: every answer is 202 or 503 with Retry-After, never anything else.
    for (stage, millis) in [("before", 1500u64), ("outage", 4000), ("after", 6000)] {
        if stage == "outage" {
            pg.stop_server();
        }
        let until = Instant::now() + Duration::from_millis(millis);
        let mut recovered = false;
        while Instant::now() < until {
            let w = 16 + (acked.len() % 100) as u32;
            let r = submit(w)
                .await
                .unwrap_or_else(|e| panic!("request failed or hung ({stage}): {e}"));
            match r.status().as_u16() {
                202 => {
                    let v: Value = r.json().await.unwrap();
                    acked.push((v["job_id"].as_str().unwrap().to_owned(), w));
                    recovered = true;
                }
                503 => {
                    assert!(
                        r.headers().contains_key("retry-after"),
                        "503 carries Retry-After"
                    );
                    let p: Value = r.json().await.unwrap();
                    assert_eq!(p["code"], "service_unavailable", "{p}");
                    unavailable += 1;
                    assert_ne!(stage, "before", "503 before the outage");
                }
                other => panic!("{stage}: unexpected {other}: {}", r.text().await.unwrap()),
            }
            if stage == "outage" && !health_down {
                let h: Value = reqwest::get(s.url("/health"))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                health_down = h["checks"]["database"]["status"] == "down";
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if stage == "outage" {
            assert!(
                unavailable > 0,
                "the outage was visible as 503s ({})",
                phase(&acked, unavailable)
            );
            assert!(health_down, "/health said database: down during the outage");
            pg.start_server();
        }
        if stage == "after" {
            assert!(recovered, "submissions succeed again after the restart");
        }
    }
    let h = reqwest::get(s.url("/health")).await.unwrap();
    assert_eq!(h.status(), 200, "healthy again without a service restart");
    eprintln!("{}", phase(&acked, unavailable));
    for (jid, w) in &acked {
        let j = s.wait_job(jid, Duration::from_secs(120)).await;
        assert_eq!(j["status"], "completed", "acknowledged job not lost: {j}");
        assert_eq!(output(&j)["width"].as_u64().unwrap(), u64::from(*w));
    }
}

#[tokio::test]
async fn start_up_names_a_missing_bucket_and_setup_creates_it() {
    force_production();
    let dir = tempdir();
    let run = |sub: &str| {
        command(&dir)
            .arg(sub)
            .env("S3_BUCKET_RAW", "fresh-raw")
            .env("S3_BUCKET_PROCESSED", "fresh-processed")
            .output()
            .unwrap()
    };
    // `sweep` opens the store the way `serve` and `worker` do, then exits.
    let out = run("sweep");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without its buckets");
    assert!(
        err.contains("'fresh-raw'") && err.contains("no such bucket"),
        "the message names the bucket and the problem: {err}"
    );
    let out = run("setup");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("fresh-raw") && said.contains("fresh-processed"),
        "{said}"
    );
    assert!(said.contains("both buckets are reachable"), "{said}");
    let out = run("sweep");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
