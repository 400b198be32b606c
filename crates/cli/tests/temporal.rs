//! The Temporal engine (issue 5), against a real Temporal dev server (started per test process
//! through scripts/temporal-dev-server.sh, or PHOTO_API_TEST_TEMPORAL): workers SIGKILLed
//! mid-activity, the workflows as the `temporal` CLI sees them, duplicate starts, start-up
//! failure. The engine conformance suite (main_path, durability with
//! PHOTO_API_TEST_ENGINE=temporal) covers everything else both engines share.
#![expect(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A `photo-api worker` process, killed when dropped.
struct WorkerProc {
    child: Child,
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
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn server(max_attempts: &str) -> Server {
    force_temporal();
    Server::start_with(
        Opts::default()
            .arg("--worker-mode")
            .arg("none")
            .env("PHOTO_API_MAX_ATTEMPTS", max_attempts),
    )
    .await
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn output(job: &Value) -> &Value {
    &job["outputs"][0]
}

#[tokio::test]
async fn twenty_sigkills_mid_activity_during_100_jobs_lose_nothing() {
    // Kills can hit the same job repeatedly; no job may die of them.
    let s = server("40").await;
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
        // Temporal's heartbeat timeout: a killed worker's attempt is retried after this.
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
    let mut all = Vec::new();
    for spec in &specs {
        let j = s.submit(submit(spec)).await;
        let jid = j["job_id"].as_str().unwrap().to_owned();
        let j = s.wait_job(&jid, Duration::from_secs(120)).await;
        assert_eq!(j["status"], "completed", "{j}");
        let (_, _, bytes) = download(output(&j)["url"].as_str().unwrap()).await;
        expected.push(hex(&Sha256::digest(&bytes)));
        all.push(jid);
    }

    let mut jobs: Vec<(String, usize)> = Vec::new();
    for i in 0..100 {
        let j = s.submit(submit(&specs[i % specs.len()])).await;
        assert_eq!(j["engine"], "temporal", "{j}");
        jobs.push((j["job_id"].as_str().unwrap().to_owned(), i % specs.len()));
    }
    spawn(&mut workers);
    spawn(&mut workers);

    // Fault injection: SIGKILL a worker while its activity holds a job, 20 times.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut kills = 0;
    while kills < 20 {
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
        // Check it still holds that job right now, so the fault lands mid-activity.
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

    let mut extra_attempts = 0;
    let mut retried = 0;
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
        let (status, _, bytes) = download(output(&j)["url"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(
            hex(&Sha256::digest(&bytes)),
            expected[*spec],
            "output of {jid} is byte-identical to the fault-free reference"
        );
        all.push(jid.clone());
    }
    eprintln!(
        "{kills} kills; {retried} of 100 jobs needed more than one attempt, {extra_attempts} extra attempts in all"
    );
    assert!(
        extra_attempts >= 10,
        "most kills interrupted an activity ({extra_attempts} extra attempts after {kills} kills)"
    );
    drop(workers);

    // `temporal workflow list` (the real CLI) shows one completed workflow per job, with the
    // workflow id recorded in job_logs.
    let mut recorded = BTreeSet::new();
    for jid in &all {
        let j = s.job(jid).await;
        let wf = j["temporal_workflow_id"].as_str().unwrap().to_owned();
        assert_eq!(wf, format!("photo-job-{jid}"));
        assert_eq!(j["temporal_task_queue"], task_queue(&s.data_dir).as_str());
        recorded.insert(wf);
    }
    let listed = temporal_workflow_list(&s.data_dir);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for w in &listed {
        let id = w["execution"]["workflowId"]
            .as_str()
            .unwrap_or_else(|| panic!("no workflow id in {w}"))
            .to_owned();
        let status = w["status"].to_string();
        assert!(status.contains("COMPLETED"), "{id}: {w}");
        *seen.entry(id).or_default() += 1;
    }
    assert!(
        seen.values().all(|&n| n == 1),
        "one run per workflow: {seen:?}"
    );
    let listed_ids: BTreeSet<String> = seen.into_keys().collect();
    assert_eq!(listed_ids, recorded, "temporal workflow list = job_logs");
}

#[tokio::test]
async fn a_duplicate_start_returns_the_same_run_and_runs_the_job_once() {
    let s = server("3").await;
    let id = s.upload_ready(jpeg(320, 240), "image/jpeg").await;
    let j = s
        .submit(json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 64, "height": 64}}))
        .await;
    let jid: photo_core::JobId = j["job_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        j["temporal_workflow_id"],
        format!("photo-job-{jid}").as_str()
    );
    let client = photo_temporal::TemporalClient::connect(photo_temporal::TemporalSettings {
        target: temporal_target(),
        namespace: "default".into(),
        task_queue: task_queue(&s.data_dir),
        tls: None,
        server_ca: None,
        server_name: None,
        api_key: None,
    })
    .await
    .unwrap();
    let policy = photo_temporal::JobPolicy {
        job_timeout: Duration::from_secs(120),
        lease: Duration::from_secs(30),
        backoff_base: Duration::from_secs(2),
        backoff_max: Duration::from_secs(300),
    };
    // The API started the workflow at submit; starting it again finds that run.
    let a = client
        .start_workflow_for(jid, 3, None, &policy)
        .await
        .unwrap();
    let b = client
        .start_workflow_for(jid, 3, None, &policy)
        .await
        .unwrap();
    assert!(a.existing && b.existing, "{a:?} {b:?}");
    assert!(!a.run_id.is_empty());
    assert_eq!(a.run_id, b.run_id, "the same run");
    assert_eq!(a.workflow_id, format!("photo-job-{jid}"));

    let _w = WorkerProc::spawn(&s.data_dir, &[], 0);
    let done = s.wait_job(&jid.to_string(), Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1);
    assert_eq!(history_count(&done, "started"), 1);
    // After it finished, a start still answers with that run (reuse is refused) and nothing
    // runs again.
    let c = client
        .start_workflow_for(jid, 3, None, &policy)
        .await
        .unwrap();
    assert!(c.existing);
    assert_eq!(c.run_id, a.run_id);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.job(&jid.to_string()).await["history"], done["history"]);
    let listed = temporal_workflow_list(&s.data_dir);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0]["execution"]["runId"].as_str(),
        Some(a.run_id.as_str())
    );
}

#[tokio::test]
async fn health_reports_temporal_and_startup_fails_clearly_without_it() {
    force_temporal();
    let s = Server::start().await;
    let h: Value = reqwest::get(s.url("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["checks"]["temporal"]["status"], "up", "{h}");
    assert_eq!(h["checks"]["temporal"]["required"], true, "{h}");

    // Nothing listens on this port: `worker` and `serve` refuse to start, saying why.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir: PathBuf = tempdir();
    for sub in ["worker", "serve"] {
        let out = command(&dir)
            .arg(sub)
            .args(["--listen", "127.0.0.1:0"])
            .env("TEMPORAL_TARGET", format!("127.0.0.1:{port}"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{sub} started without Temporal");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("connecting to Temporal") && err.contains(&port.to_string()),
            "{sub}: {err}"
        );
    }
}

/// A TCP proxy to the dev server that can be cut (every connection dropped, new ones refused)
/// and restored: Temporal unreachable for the API without stopping the (in-memory) dev server.
struct Proxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, cs) = (cut.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                cs.lock().unwrap().push(h.abort_handle());
            }
        });
        Proxy { port, cut, conns }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

// Multi-threaded: the harness waits for the server's announcement with a blocking receive,
// and the proxy's tasks must keep running meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_while_temporal_is_unreachable_is_started_by_the_outbox() {
    force_temporal();
    let proxy = Proxy::start(temporal_target()).await;
    let s = Server::start_with(
        Opts::default()
            .arg("--worker-mode")
            .arg("none")
            .env("TEMPORAL_TARGET", &format!("127.0.0.1:{}", proxy.port)),
    )
    .await;
    let id = s.upload_ready(jpeg(320, 240), "image/jpeg").await;
    // The worker reaches the dev server directly; only the API loses it.
    let _w = WorkerProc::spawn(&s.data_dir, &[("TEMPORAL_TARGET", &temporal_target())], 0);

    proxy.cut();
    let started = Instant::now();
    let j = s
        .submit(json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 32, "height": 32}}))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the submit answered though Temporal is unreachable ({:?})",
        started.elapsed()
    );
    let jid = j["job_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = s.job(&jid).await;
    assert_eq!(waiting["status"], "submitted", "not started yet: {waiting}");
    assert!(
        temporal_workflow_list(&s.data_dir).is_empty(),
        "no workflow while Temporal was unreachable"
    );
    let h = reqwest::get(s.url("/health")).await.unwrap();
    assert_eq!(h.status(), 503, "/health says temporal is down");

    proxy.restore();
    let done = s.wait_job(&jid, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1);
    let listed = temporal_workflow_list(&s.data_dir);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0]["execution"]["workflowId"],
        format!("photo-job-{jid}").as_str()
    );
}
