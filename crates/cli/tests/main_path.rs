//! The quick-start flow over HTTP against the real binary.
#![expect(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn quick_start_thumbnail_and_transform() {
    let s = Server::start().await;
    if production().is_none() {
        assert!(
            s.data_dir.join("photo-api.db").exists(),
            "SQLite database under the data dir"
        );
        assert!(
            s.data_dir.join("objects").is_dir(),
            "object directory under the data dir"
        );
    }

    // The exact request of the design documents.
    let init = s.init_upload("image/jpeg", 5_000_000).await;
    for field in [
        "upload_id",
        "key",
        "method",
        "url",
        "fields",
        "headers",
        "expires_at",
    ] {
        assert!(
            init.get(field).is_some(),
            "init response has {field}: {init}"
        );
    }
    let photo = jpeg(1200, 800);
    match production() {
        None => {
            assert!(
                init["url"].as_str().unwrap().starts_with(&s.base),
                "local URL points at the server"
            );
            assert!(init["url"].as_str().unwrap().contains("sig="));
            let r = s.send_upload(&init, photo.clone(), "image/jpeg").await;
            assert_eq!(r.status(), 201);
            let up: Value = r.json().await.unwrap();
            assert_eq!(up["size"], photo.len() as u64);
        }
        Some(p) => {
            // A presigned POST policy straight to the raw bucket.
            let url = init["url"].as_str().unwrap();
            assert!(url.starts_with(&p.s3_endpoint(&s.data_dir)), "{url}");
            assert!(url.contains(&p.bucket_raw(&s.data_dir)), "{url}");
            for f in [
                "key",
                "Content-Type",
                "policy",
                "x-amz-signature",
                "x-amz-credential",
            ] {
                assert!(init["fields"][f].is_string(), "policy field {f}: {init}");
            }
            assert_eq!(init["fields"]["key"], init["key"]);
            let r = s.send_upload(&init, photo.clone(), "image/jpeg").await;
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    }
    let id = init["upload_id"].as_str().unwrap();
    let r = s.complete(id).await;
    assert_eq!(r.status(), 200);
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["status"], "ready");
    assert_eq!(done["content_type"], "image/jpeg");
    assert_eq!(
        (done["width"].as_u64(), done["height"].as_u64()),
        (Some(1200), Some(800))
    );
    // Completing again answers the same.
    let again: Value = s.complete(id).await.json().await.unwrap();
    assert_eq!(again["status"], "ready");

    let job = s
        .submit(json!({"job_type": "thumbnail", "upload_id": id,
            "params": {"width": 256, "height": 256, "format": "jpeg", "quality": 80}}))
        .await;
    assert_eq!(job["status"], "submitted");
    let jid = job["job_id"].as_str().unwrap().to_owned();
    // The same API on both engines; only these fields tell them apart.
    if temporal_engine() {
        assert_eq!(job["engine"], "temporal");
        assert_eq!(
            job["temporal_workflow_id"],
            format!("photo-job-{jid}").as_str()
        );
    } else {
        assert_eq!(job["engine"], "sql");
        assert!(job["temporal_workflow_id"].is_null());
    }
    let done = s.wait_job(&jid, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1);
    for f in ["created_at", "started_at", "completed_at"] {
        assert!(done[f].is_string(), "{f} set: {done}");
    }
    let statuses: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["submitted", "started", "completed"]);
    let out = &done["outputs"][0];
    assert_eq!(
        (out["width"].as_u64(), out["height"].as_u64()),
        (Some(256), Some(171))
    );
    assert_eq!(out["content_type"], "image/jpeg");
    let (status, ct, bytes) = download(out["url"].as_str().unwrap()).await;
    assert_eq!((status, ct.as_str()), (200, "image/jpeg"));
    assert_eq!(bytes.len() as u64, out["size"].as_u64().unwrap());
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (256, 171));

    // transform: cover crop to an exact box, WebP.
    let t = s
        .submit(json!({"job_type": "transform", "upload_id": id,
            "params": {"width": 300, "height": 300, "fit": "cover", "format": "webp", "quality": 70}}))
        .await;
    let t = s
        .wait_job(t["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(t["status"], "completed", "{t}");
    let (status, ct, bytes) = download(t["outputs"][0]["url"].as_str().unwrap()).await;
    assert_eq!((status, ct.as_str()), (200, "image/webp"));
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (300, 300));

    // transform: PNG, inside, only a width.
    let p = s
        .submit(json!({"job_type": "transform", "upload_id": id,
            "params": {"width": 600, "format": "png"}}))
        .await;
    let p = s
        .wait_job(p["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(p["status"], "completed", "{p}");
    assert_eq!(p["outputs"][0]["height"], 400);
    let (_, ct, bytes) = download(p["outputs"][0]["url"].as_str().unwrap()).await;
    assert_eq!(ct, "image/png");
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        image::ImageFormat::Png
    );
}

#[tokio::test]
async fn list_jobs_filters_and_paginates() {
    let s = Server::start_with(Opts::default().arg("--worker-mode").arg("none")).await;
    let id = s.upload_ready(jpeg(64, 48), "image/jpeg").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let job_type = if i % 2 == 0 { "thumbnail" } else { "transform" };
        let params = if i % 2 == 0 {
            json!({"width": 10, "height": 10})
        } else {
            json!({"width": 10})
        };
        let j = s
            .submit(json!({"job_type": job_type, "upload_id": id, "params": params}))
            .await;
        ids.push(j["job_id"].as_str().unwrap().to_owned());
    }
    // Cursor pagination: newest first, every job exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/jobs?limit=3&cursor={c}"),
            None => "/jobs?limit=3".to_owned(),
        };
        let page: Value = s.get(&q).await.json().await.unwrap();
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 3);
        seen.extend(
            jobs.iter()
                .map(|j| j["job_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let thumbs: Value = s
        .get("/jobs?job_type=thumbnail")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(thumbs["jobs"].as_array().unwrap().len(), 4);
    let submitted: Value = s
        .get("/jobs?status=submitted&job_type=transform")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(submitted["jobs"].as_array().unwrap().len(), 3);
    let none: Value = s.get("/jobs?status=completed").await.json().await.unwrap();
    assert_eq!(none["jobs"].as_array().unwrap().len(), 0);
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let after: Value = s
        .get(&format!(
            "/jobs?created_after={}",
            future.replace('+', "%2B")
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["jobs"].as_array().unwrap().len(), 0);
    let before: Value = s
        .get(&format!(
            "/jobs?created_before={}",
            future.replace('+', "%2B")
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(before["jobs"].as_array().unwrap().len(), 7);
    expect_problem(s.get("/jobs?status=bogus").await, 400, "invalid_request").await;
    expect_problem(s.get("/jobs?limit=0").await, 400, "invalid_request").await;
    expect_problem(s.get("/jobs?cursor=zzz").await, 400, "invalid_request").await;
}

#[tokio::test]
async fn configured_api_key_works_and_no_key_is_generated() {
    let key = "k".repeat(40);
    let s = Server::start_with(Opts::default().env("API_KEY", &key)).await;
    assert_eq!(s.key, key);
    let r = s.get("/jobs").await;
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::new()
        .get(s.url("/jobs"))
        .bearer_auth("k".repeat(41))
        .send()
        .await
        .unwrap();
    expect_problem(r, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn generated_admin_key_is_printed_once_and_stored_hashed() {
    let dir = tempdir();
    let mut first = Server::start_with(Opts {
        data_dir: Some(dir.clone()),
        ..Default::default()
    })
    .await;
    let key = first.key.clone();
    assert!(key.starts_with("pk_"));
    first.signal("TERM");
    let _ = first.child.wait();
    let db = match production() {
        None => std::fs::read(dir.join("photo-api.db")).unwrap(),
        Some(p) => {
            let out = std::process::Command::new("psql")
                .arg(p.database_url(&dir))
                .args(["-tAc", "SELECT row_to_json(k) FROM api_keys k"])
                .output()
                .unwrap();
            assert!(out.status.success());
            assert!(!out.stdout.is_empty(), "the key's row is there");
            out.stdout
        }
    };
    // pk_<id>_<secret>; the base64url secret may itself contain '_'.
    let secret = key.splitn(3, '_').nth(2).unwrap();
    assert!(secret.len() >= 40, "{key}");
    assert!(
        !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the key's secret is not stored in the database"
    );
    // A restart prints no new key and the old one still works.
    let second = Server::start_with(Opts {
        data_dir: Some(dir.clone()),
        key: Some(key.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(second.get("/jobs").await.status(), 200);
}

#[tokio::test]
async fn health_openapi_and_docs() {
    let s = Server::start().await;
    let r = reqwest::get(s.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::get(s.url("/health")).await.unwrap();
    assert_eq!(r.status(), 200);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["checks"]["database"]["status"], "up");
    assert_eq!(h["checks"]["storage"]["status"], "up");
    if temporal_engine() {
        assert_eq!(h["checks"]["temporal"]["status"], "up", "{h}");
    } else {
        assert!(h["checks"]["temporal"].is_null(), "{h}");
    }

    let doc: Value = reqwest::get(s.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/healthz", "get"),
        ("/health", "get"),
        ("/uploads/init", "post"),
        ("/uploads/{upload_id}", "get"),
        ("/uploads/{upload_id}/object", "post"),
        ("/uploads/{upload_id}/complete", "post"),
        ("/jobs", "post"),
        ("/jobs", "get"),
        ("/jobs/{job_id}", "get"),
        ("/objects/{bucket}/{key}", "get"),
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
    let page = reqwest::get(s.url("/docs"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("/uploads/init") && page.contains("/jobs/{job_id}"));
}

#[tokio::test]
async fn sigterm_stops_gracefully() {
    let mut s = Server::start().await;
    s.signal("TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            assert!(status.success(), "clean exit: {status:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn json_logs_when_asked() {
    let dir = tempdir();
    let out = command(&dir)
        .arg("migrate")
        .env("PHOTO_API_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(!lines.is_empty(), "the migration is logged");
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    let n = photo_db::PgRepo::migration_count();
    assert!(
        stdout.contains(&format!("{n} migration(s) applied now")),
        "{stdout}"
    );
}

#[test]
fn bad_configuration_fails_at_start_with_a_clear_message() {
    let dir = tempdir();
    for (var, value, expect) in [
        ("PHOTO_API_MAX_ATTEMPTS", "0", "PHOTO_API_MAX_ATTEMPTS"),
        ("PHOTO_API_JOB_LEASE", "soon", "job-lease"),
        ("MAX_UPLOAD_SIZE", "lots", "max-upload-size"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
        ("API_KEY", "short", "API_KEY"),
    ] {
        let out = command(&dir).arg("serve").env(var, value).output().unwrap();
        assert!(!out.status.success(), "{var}={value} must fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(expect), "{var}={value}: {err}");
    }
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "no_such_setting = 1\n").unwrap();
    let out = command(&dir)
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("bad.toml") && err.contains("no_such_setting"),
        "{err}"
    );
}

#[tokio::test]
async fn transform_with_crop_rotate_filters_and_encoder_options() {
    let s = Server::start().await;
    let id = s.upload_ready(jpeg(1200, 800), "image/jpeg").await;
    let j = s
        .submit(json!({"job_type": "transform", "upload_id": id, "params": {
            "crop": {"x": 0, "y": 0, "width": 600, "height": 400},
            "rotate": 90, "flop": true, "width": 200,
            "sharpen": {"sigma": 1.0, "amount": 0.8},
            "format": "jpeg", "progressive": true, "optimize_huffman": true, "quality": 85}}))
        .await;
    let j = s
        .wait_job(j["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(j["status"], "completed", "{j}");
    let out = &j["outputs"][0];
    assert_eq!(
        (out["width"].as_u64(), out["height"].as_u64()),
        (Some(200), Some(300))
    );
    let (_, ct, bytes) = download(out["url"].as_str().unwrap()).await;
    assert_eq!(ct, "image/jpeg");
    assert!(
        bytes.windows(2).any(|w| w == [0xFF, 0xC2]),
        "progressive SOF2 marker"
    );
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (200, 300));

    // Smart crop to a square, WebP lossless.
    let j = s
        .submit(json!({"job_type": "transform", "upload_id": id, "params": {
            "width": 128, "height": 128, "fit": "cover", "position": "entropy",
            "format": "webp", "lossless": true}}))
        .await;
    let j = s
        .wait_job(j["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(j["status"], "completed", "{j}");
    let (_, _, bytes) = download(j["outputs"][0]["url"].as_str().unwrap()).await;
    assert!(
        bytes.windows(4).any(|w| w == b"VP8L"),
        "lossless WebP chunk"
    );
    // Out-of-bounds crop: a permanent failure with a clear code.
    let j = s
        .submit(json!({"job_type": "transform", "upload_id": id, "params": {
            "crop": {"x": 1100, "y": 0, "width": 500, "height": 100}}}))
        .await;
    let j = s
        .wait_job(j["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(j["status"], "failed", "{j}");
    assert_eq!(j["error_code"], "invalid_parameters");
    assert_eq!(j["attempts"], 1);
    // Parameter errors are caught at submission.
    let r = s
        .post(
            "/jobs",
            json!({"job_type": "transform", "upload_id": id, "params": {"rotate": 45}}),
        )
        .await;
    expect_problem(r, 422, "invalid_parameters").await;
}

#[tokio::test]
async fn health_is_503_when_a_required_dependency_is_down() {
    // No worker process: one starting up would re-create the directory removed below.
    let s = Server::start_with(Opts::default().arg("--worker-mode").arg("none")).await;
    // Break the object store: its staging directory (or the S3 server's bucket) disappears.
    let broken = match production() {
        None => s.data_dir.join("objects/.staging"),
        Some(p) => p.s3_root(&s.data_dir).join(p.bucket_processed(&s.data_dir)),
    };
    std::fs::remove_dir_all(&broken).unwrap();
    let r = reqwest::get(s.url("/health")).await.unwrap();
    assert_eq!(r.status(), 503);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["status"], "unavailable");
    assert_eq!(h["checks"]["storage"]["status"], "down");
    assert!(h["checks"]["storage"]["error"].is_string());
    assert_eq!(h["checks"]["database"]["status"], "up");
    assert_eq!(
        reqwest::get(s.url("/healthz")).await.unwrap().status(),
        200,
        "still alive"
    );
    std::fs::create_dir_all(&broken).unwrap();
    assert_eq!(
        reqwest::get(s.url("/health")).await.unwrap().status(),
        200,
        "recovers by itself"
    );
}

#[tokio::test]
async fn animated_gif_keeps_every_frame_when_asked() {
    let s = Server::start().await;
    let id = s.upload_ready(animated_gif(120, 80, 4), "image/gif").await;
    let anim = s
        .submit(json!({"job_type": "transform", "upload_id": id,
            "params": {"width": 60, "format": "gif", "animated": true}}))
        .await;
    let still = s
        .submit(json!({"job_type": "transform", "upload_id": id,
            "params": {"width": 60, "format": "gif"}}))
        .await;
    for (job, frames) in [(anim, 4), (still, 1)] {
        let j = s
            .wait_job(job["job_id"].as_str().unwrap(), Duration::from_secs(60))
            .await;
        assert_eq!(j["status"], "completed", "{j}");
        let out = &j["outputs"][0];
        assert_eq!(out["content_type"], "image/gif");
        assert_eq!(
            (out["width"].as_u64(), out["height"].as_u64()),
            (Some(60), Some(40))
        );
        let (status, ct, bytes) = download(out["url"].as_str().unwrap()).await;
        assert_eq!((status, ct.as_str()), (200, "image/gif"));
        assert_eq!(gif_frames(&bytes), frames, "{j}");
    }
    // animated is for GIF output, with resizing only.
    for params in [
        json!({"width": 60, "format": "png", "animated": true}),
        json!({"width": 60, "format": "gif", "animated": true, "rotate": 90}),
    ] {
        let r = s
            .post(
                "/jobs",
                json!({"job_type": "transform", "upload_id": id, "params": params}),
            )
            .await;
        expect_problem(r, 422, "invalid_parameters").await;
    }
    // A still source asked to animate fails permanently with a clear code.
    let jpg = s.upload_ready(jpeg(64, 48), "image/jpeg").await;
    let j = s
        .submit(json!({"job_type": "transform", "upload_id": jpg,
            "params": {"width": 32, "format": "gif", "animated": true}}))
        .await;
    let j = s
        .wait_job(j["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(j["status"], "failed", "{j}");
    assert_eq!(j["error_code"], "invalid_parameters", "{j}");
}
