//! Malware scanning against a real clamd (Debian's clamav-daemon, started through
//! scripts/clamd-test-server.sh) with a signature database this test builds: a body signature of
//! the EICAR test string, which is assembled at run time and never stored in the repository.
//! Uploads land under the quarantine prefix of the raw bucket and the signed policy pins that key.
//! A clean JPEG is promoted (moved to its `tenants/…` key, the quarantined copy deleted); EICAR,
//! and EICAR hidden in a valid JPEG, are rejected and deleted from everywhere; with clamd stopped
//! nothing is promoted (the object stays in quarantine only, no job may use it) and /health says
//! so; when clamd is back, the same server promotes it. Quarantined objects expire like raw
//! uploads. Checked on disk for the local store and for the S3 test server alike.
#![expect(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Opts, Server, expect_problem, files_under, jpeg, production, raw_object_path, tempdir,
};
use serde_json::{Value, json};

/// The EICAR anti-virus test string, from two halves so this file never holds it whole.
fn eicar() -> Vec<u8> {
    let mut e = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$".to_vec();
    e.extend_from_slice(b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    e
}

struct Clamd {
    child: Child,
    db: PathBuf,
    port: u16,
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"zPING\0").is_err() {
        return false;
    }
    let mut r = Vec::new();
    let _ = s.read_to_end(&mut r);
    r == b"PONG\0"
}

impl Clamd {
    /// A signature database of our own: one `.ndb` body signature, matched anywhere in a file.
    fn database() -> PathBuf {
        let db = tempdir();
        let hex: String = eicar().iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(
            db.join("photo-test.ndb"),
            format!("Photo-Test-EICAR:0:*:{hex}\n"),
        )
        .unwrap();
        db
    }

    fn start(db: &Path, port: u16) -> Clamd {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/clamd-test-server.sh");
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .arg(script)
            .arg(db)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ping(port) {
            assert!(
                Instant::now() < deadline,
                "clamd did not start (see {}/clamd.log)",
                db.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Clamd {
            child,
            db: db.to_owned(),
            port,
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(20);
        while ping(self.port) {
            assert!(Instant::now() < deadline, "clamd still answers");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// init + upload; returns the init answer (not completed). The bytes are in quarantine.
async fn uploaded(s: &Server, bytes: Vec<u8>) -> Value {
    let init = s.init_upload("image/jpeg", bytes.len() as u64).await;
    assert_eq!(init["quarantined"], true, "{init}");
    let r = s.send_upload(&init, bytes, "image/jpeg").await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let (q, p) = places(s, &init);
    assert!(q.exists() && !p.exists(), "uploaded into quarantine only");
    init
}

/// Where an upload's object is in quarantine and where it is once promoted (on disk: the local
/// store's directory or the S3 test server's).
fn places(s: &Server, init: &Value) -> (PathBuf, PathBuf) {
    let key = init["key"].as_str().unwrap();
    let id = init["upload_id"].as_str().unwrap();
    let promoted = format!("tenants/default/uploads/{id}");
    assert_eq!(key, format!("quarantine/{promoted}"), "{init}");
    (
        raw_object_path(&s.data_dir, key),
        raw_object_path(&s.data_dir, &promoted),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A valid JPEG with `payload` in a comment (COM) segment right after SOI.
fn jpeg_with_comment(payload: &[u8]) -> Vec<u8> {
    let base = jpeg(120, 80);
    let mut out = base[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&base[2..]);
    out
}

/// `POST /files/upload` of one file into the folder `scanned`.
async fn file_upload(s: &Server, name: &str, bytes: Vec<u8>) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
    s.http
        .post(s.url("/files/upload?folder=scanned"))
        .bearer_auth(&s.key)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap()
}

async fn health_clamd(s: &Server) -> Value {
    let h: Value = s
        .http
        .get(s.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    h["checks"]["clamd"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_are_scanned_by_clamd_and_fail_closed() {
    let db = Clamd::database();
    let port = free_port();
    let mut clamd = Clamd::start(&db, port);
    let s = Server::start_with(
        Opts::default()
            .env("API_KEY", "clamav-test-bootstrap-0123456789")
            .env("PHOTO_API_CLAMD", &format!("tcp://127.0.0.1:{port}"))
            .env("PHOTO_API_CLAMD_TIMEOUT", "30s"),
    )
    .await;
    assert_eq!(health_clamd(&s).await["status"], "up");

    // The signed policy pins the quarantine key: the form cannot aim the bytes at the
    // promoted key (our upload route and the S3 server's POST policy both refuse).
    let init = s.init_upload("image/jpeg", 10_000).await;
    let (q, p) = places(&s, &init);
    let mut forged = init.clone();
    forged["fields"]["key"] = Value::String(
        init["key"]
            .as_str()
            .unwrap()
            .strip_prefix("quarantine/")
            .unwrap()
            .into(),
    );
    let r = s.send_upload(&forged, jpeg(40, 40), "image/jpeg").await;
    // Ours: 403 policy_violation; s3s-fs: 400 InvalidPolicyDocument (AWS: 403 AccessDenied).
    let status = r.status().as_u16();
    assert!(
        [400, 403].contains(&status),
        "{status}: {}",
        r.text().await.unwrap()
    );
    assert!(!p.exists() && !q.exists(), "nothing written anywhere");

    // Clean: promoted out of quarantine to its tenants/… key; jobs read it there.
    let clean = uploaded(&s, jpeg(200, 150)).await;
    let id = clean["upload_id"].as_str().unwrap();
    let (q, p) = places(&s, &clean);
    let r = s.complete(id).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["key"], format!("tenants/default/uploads/{id}"), "{v}");
    assert!(p.exists(), "promoted");
    assert!(!q.exists(), "the quarantined copy is deleted");
    let job = s
        .submit(json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 16, "height": 16}}))
        .await;
    let done = s
        .wait_job(job["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "completed", "{done}");

    // EICAR, and EICAR hidden in a valid JPEG: rejected with the signature, object deleted.
    let hidden = jpeg_with_comment(&eicar());
    assert!(
        image::load_from_memory(&hidden).is_ok(),
        "still a valid JPEG"
    );
    for (what, bytes) in [("eicar", eicar()), ("eicar in a jpeg", hidden)] {
        let init = uploaded(&s, bytes).await;
        let id = init["upload_id"].as_str().unwrap();
        let p = expect_problem(s.complete(id).await, 422, "malware_detected").await;
        assert!(
            p["reason"].as_str().unwrap().contains("Photo-Test-EICAR"),
            "{what}: {p}"
        );
        let v: Value = s.get(&format!("/uploads/{id}")).await.json().await.unwrap();
        assert_eq!(v["status"], "rejected", "{what}");
        assert_eq!(v["reject_code"], "malware_detected", "{what}");
        let (q, p) = places(&s, &init);
        assert!(
            !q.exists() && !p.exists(),
            "{what}: the infected object is deleted, never promoted"
        );
        let r = s
            .post("/jobs", json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 8, "height": 8}}))
            .await;
        assert_eq!(r.status(), 409, "{what}: never processed");
    }

    // The file API scans before a file exists: clean is stored, infected never appears.
    assert_eq!(
        file_upload(&s, "clean.jpg", jpeg(64, 64)).await.status(),
        201
    );
    let r = file_upload(&s, "bad.jpg", jpeg_with_comment(&eicar())).await;
    let p = expect_problem(r, 422, "malware_detected").await;
    assert!(
        p["detail"].as_str().unwrap().contains("Photo-Test-EICAR"),
        "{p}"
    );
    expect_problem(
        s.get("/files/metadata/scanned/bad.jpg").await,
        404,
        "not_found",
    )
    .await;

    // clamd down: nothing is promoted (fail closed), /health says so.
    clamd.stop();
    let waiting = uploaded(&s, jpeg(100, 100)).await;
    let wid = waiting["upload_id"].as_str().unwrap();
    for _ in 0..2 {
        let r = s.complete(wid).await;
        assert!(r.headers().get("retry-after").is_some());
        expect_problem(r, 503, "service_unavailable").await;
    }
    let v: Value = s
        .get(&format!("/uploads/{wid}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "uploaded", "not promoted: {v}");
    let (wq, wp) = places(&s, &waiting);
    assert!(wq.exists() && !wp.exists(), "only in quarantine");
    let r = s
        .post(
            "/jobs",
            json!({"job_type": "thumbnail", "upload_id": wid, "params": {"width": 8, "height": 8}}),
        )
        .await;
    expect_problem(r, 409, "upload_not_ready").await;
    let r = file_upload(&s, "while-down.jpg", jpeg(64, 64)).await;
    expect_problem(r, 503, "service_unavailable").await;
    expect_problem(
        s.get("/files/metadata/scanned/while-down.jpg").await,
        404,
        "not_found",
    )
    .await;
    let h = health_clamd(&s).await;
    assert_eq!(h["status"], "down", "{h}");
    assert!(h["error"].as_str().unwrap().contains("clamd"), "{h}");

    // clamd back: the same server (no restart) scans and promotes again.
    let db_dir = clamd.db.clone();
    let _clamd = Clamd::start(&db_dir, port);
    assert_eq!(health_clamd(&s).await["status"], "up");
    let r = s.complete(wid).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert!(wp.exists() && !wq.exists(), "promoted without a restart");
    assert_eq!(
        file_upload(&s, "while-down.jpg", jpeg(64, 64))
            .await
            .status(),
        201
    );
    let again = uploaded(&s, eicar()).await;
    expect_problem(
        s.complete(again["upload_id"].as_str().unwrap()).await,
        422,
        "malware_detected",
    )
    .await;
    // Every attempt removed its private scan copy.
    let left: Vec<String> = files_under(&raw_object_path(&s.data_dir, "quarantine/checks"))
        .into_iter()
        .filter(|f| !f.rsplit('/').next().unwrap().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "scan copies left: {left:?}");
}

/// A quarantined upload that is never completed expires like any raw upload: the sweeper deletes
/// the quarantined object. Until then `complete` fails closed (no clamd answers here).
#[tokio::test(flavor = "multi_thread")]
async fn quarantined_uploads_expire_like_raw_uploads() {
    let s = Server::start_with(
        Opts::default()
            .env("API_KEY", "clamav-test-bootstrap-0123456789")
            .env(
                "PHOTO_API_CLAMD",
                &format!("tcp://127.0.0.1:{}", free_port()),
            )
            .env("PHOTO_API_CLAMD_TIMEOUT", "2s")
            .env("PHOTO_API_RAW_TTL", "3s")
            .env("PHOTO_API_SWEEP_INTERVAL", "200ms")
            .arg("--worker-mode")
            .arg("none"),
    )
    .await;
    let init = uploaded(&s, jpeg(64, 64)).await;
    let id = init["upload_id"].as_str().unwrap();
    let (q, p) = places(&s, &init);
    expect_problem(s.complete(id).await, 503, "service_unavailable").await;
    assert!(q.exists() && !p.exists());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value = s.get(&format!("/uploads/{id}")).await.json().await.unwrap();
        if v["status"] == "expired" {
            break;
        }
        assert!(Instant::now() < deadline, "never expired: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !q.exists() && !p.exists(),
        "the quarantined object is swept"
    );
    if production().is_none() {
        // The local store's signed download route never serves quarantine, whatever the URL.
        let r = s
            .http
            .get(s.url(&format!(
                "/objects/raw/{}?expires=9999999999&sig=00",
                init["key"].as_str().unwrap()
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
}
