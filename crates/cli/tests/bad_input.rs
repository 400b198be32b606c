//! Every bad input gets a 4xx problem+json with a stable code; nothing half-written is left.
#![expect(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn raw_object_exists(s: &Server, init: &Value) -> bool {
    raw_object_path(&s.data_dir, init["key"].as_str().unwrap()).exists()
}

#[tokio::test]
async fn auth_is_required_and_checked() {
    let s = Server::start().await;
    let c = reqwest::Client::new();
    let body = json!({"content_type": "image/jpeg", "max_bytes": 10});
    let r = c
        .post(s.url("/uploads/init"))
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_problem(r, 401, "unauthenticated").await;
    for bad in [
        "nope",
        "pk_000000000000_wrong",
        "pk_zz_x",
        &format!("{}x", s.key),
    ] {
        let r = c
            .post(s.url("/uploads/init"))
            .bearer_auth(bad)
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_problem(r, 401, "invalid_credentials").await;
    }
    let r = c
        .get(s.url("/jobs"))
        .header("authorization", format!("Basic {}", s.key))
        .send()
        .await
        .unwrap();
    expect_problem(r, 401, "unauthenticated").await;
    // Unknown routes and methods use the envelope too.
    expect_problem(s.get("/nope").await, 404, "not_found").await;
    let r = c
        .delete(s.url("/jobs"))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    expect_problem(r, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn init_refuses_bad_requests() {
    let s = Server::start_with(Opts::default().env("MAX_UPLOAD_SIZE", "1MB")).await;
    let r = s
        .post(
            "/uploads/init",
            json!({"content_type": "text/html", "max_bytes": 10}),
        )
        .await;
    expect_problem(r, 422, "unsupported_content_type").await;
    let r = s
        .post(
            "/uploads/init",
            json!({"content_type": "image/svg+xml", "max_bytes": 10}),
        )
        .await;
    expect_problem(r, 422, "unsupported_content_type").await;
    let r = s
        .post(
            "/uploads/init",
            json!({"content_type": "image/jpeg", "max_bytes": 1_000_001}),
        )
        .await;
    let p = expect_problem(r, 422, "max_bytes_too_large").await;
    assert_eq!(p["max_upload_size"], 1_000_000);
    let r = s
        .post(
            "/uploads/init",
            json!({"content_type": "image/jpeg", "max_bytes": 0}),
        )
        .await;
    expect_problem(r, 422, "invalid_request").await;
    let r = s
        .post("/uploads/init", json!({"content_type": "image/jpeg"}))
        .await;
    expect_problem(r, 422, "invalid_request").await;
    let r = s
        .post(
            "/uploads/init",
            json!({"content_type": "image/jpeg", "max_bytes": -5}),
        )
        .await;
    expect_problem(r, 422, "invalid_request").await;
    let r = s
        .http
        .post(s.url("/uploads/init"))
        .bearer_auth(&s.key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16() / 100, 4);
    let r = s
        .http
        .post(s.url("/uploads/init"))
        .bearer_auth(&s.key)
        .body("x")
        .send()
        .await
        .unwrap();
    expect_problem(r, 415, "invalid_request").await;
}

#[tokio::test]
async fn oversize_body_is_cut_off_and_not_stored() {
    let s = Server::start().await;
    let init = s.init_upload("image/jpeg", 1000).await;
    let r = s.send_upload(&init, jpeg(300, 300), "image/jpeg").await;
    match production() {
        None => drop(expect_problem(r, 413, "upload_too_large").await),
        // S3 answers in its own XML: EntityTooLarge.
        Some(_) => assert_eq!(r.status(), 400, "{}", r.text().await.unwrap()),
    }
    assert!(!raw_object_exists(&s, &init), "nothing stored");
    assert!(staging_empty(&s.data_dir), "no partial file left");
    let r = s.complete(init["upload_id"].as_str().unwrap()).await;
    expect_problem(r, 409, "upload_missing").await;
}

/// The S3 server enforces the presigned POST policy: every deviation is refused, nothing stored.
async fn s3_refuses_tampered_and_expired_policies(s: &Server, init: &Value) {
    let refused = |r: reqwest::Response, what: &'static str| async move {
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert!([400, 403].contains(&status), "{what}: {status} {body}");
    };
    let mut bad = init.clone();
    let sig = init["fields"]["x-amz-signature"].as_str().unwrap();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    bad["fields"]["x-amz-signature"] = json!(format!("{flipped}{}", &sig[1..]));
    refused(
        s.send_upload(&bad, jpeg(8, 8), "image/jpeg").await,
        "tampered signature",
    )
    .await;
    let mut wrong_key = init.clone();
    let other_key = format!("{}-other", init["key"].as_str().unwrap());
    wrong_key["fields"]["key"] = json!(other_key);
    refused(
        s.send_upload(&wrong_key, jpeg(8, 8), "image/jpeg").await,
        "another key",
    )
    .await;
    assert!(!raw_object_path(&s.data_dir, &other_key).exists());
    let mut wrong_type = init.clone();
    wrong_type["fields"]["Content-Type"] = json!("image/png");
    refused(
        s.send_upload(&wrong_type, jpeg(8, 8), "image/jpeg").await,
        "content type",
    )
    .await;
    // One byte over the max_bytes of `init`.
    refused(
        s.send_upload(init, vec![0xFF; 100_001], "image/jpeg").await,
        "oversize",
    )
    .await;
    assert!(!raw_object_exists(s, init));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    refused(
        s.send_upload(init, jpeg(8, 8), "image/jpeg").await,
        "expired",
    )
    .await;
    assert!(!raw_object_exists(s, init));
}

#[tokio::test]
async fn tampered_and_expired_urls_are_refused() {
    let s = Server::start_with(Opts::default().env("PRESIGN_EXPIRES_SECONDS", "1")).await;
    let init = s.init_upload("image/jpeg", 100_000).await;
    if production().is_some() {
        return s3_refuses_tampered_and_expired_policies(&s, &init).await;
    }
    let url = init["url"].as_str().unwrap().to_owned();
    let mut bad = init.clone();
    let sig_pos = url.find("sig=").unwrap() + 4;
    let flipped = if &url[sig_pos..sig_pos + 1] == "0" {
        "1"
    } else {
        "0"
    };
    bad["url"] = json!(format!(
        "{}{}{}",
        &url[..sig_pos],
        flipped,
        &url[sig_pos + 1..]
    ));
    expect_problem(
        s.send_upload(&bad, jpeg(8, 8), "image/jpeg").await,
        403,
        "invalid_signature",
    )
    .await;
    // Extending the expiry invalidates the signature.
    let exp: i64 = url
        .split("expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    bad["url"] = json!(url.replace(
        &format!("expires={exp}"),
        &format!("expires={}", exp + 3600)
    ));
    expect_problem(
        s.send_upload(&bad, jpeg(8, 8), "image/jpeg").await,
        403,
        "invalid_signature",
    )
    .await;
    // Another upload's URL with this id swapped in.
    let other = s.init_upload("image/jpeg", 100_000).await;
    bad["url"] = json!(other["url"].as_str().unwrap().replace(
        other["upload_id"].as_str().unwrap(),
        init["upload_id"].as_str().unwrap()
    ));
    expect_problem(
        s.send_upload(&bad, jpeg(8, 8), "image/jpeg").await,
        403,
        "invalid_signature",
    )
    .await;
    // A field contradicting the signed policy.
    let mut wrong_key = init.clone();
    wrong_key["fields"]["key"] = json!("tenants/other/uploads/x");
    expect_problem(
        s.send_upload(&wrong_key, jpeg(8, 8), "image/jpeg").await,
        403,
        "policy_violation",
    )
    .await;
    let mut wrong_type = init.clone();
    wrong_type["fields"]["Content-Type"] = json!("image/png");
    expect_problem(
        s.send_upload(&wrong_type, jpeg(8, 8), "image/jpeg").await,
        403,
        "policy_violation",
    )
    .await;
    expect_problem(
        s.send_upload(&init, png(8, 8), "image/png").await,
        403,
        "policy_violation",
    )
    .await;
    // Expired.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    expect_problem(
        s.send_upload(&init, jpeg(8, 8), "image/jpeg").await,
        403,
        "url_expired",
    )
    .await;
    assert!(!raw_object_exists(&s, &init));
    // An unknown upload id.
    let mut unknown = init.clone();
    unknown["url"] = json!(url.replace(
        init["upload_id"].as_str().unwrap(),
        "01a21c03-0000-7000-8000-000000000000"
    ));
    expect_problem(
        s.send_upload(&unknown, jpeg(8, 8), "image/jpeg").await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn spoofed_and_bad_images_are_rejected_at_completion() {
    let s = Server::start().await;
    // PNG bytes declared (and sent) as JPEG.
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("image/jpeg", png(20, 20), "content_type_mismatch"),
        (
            "image/jpeg",
            b"<html><script>alert(1)</script></html>".to_vec(),
            "unsupported_format",
        ),
        (
            "image/png",
            png_header_claiming(65000, 65000),
            "image_too_large",
        ),
        (
            "image/jpeg",
            vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F'],
            "corrupt_image",
        ),
    ];
    for (declared, bytes, code) in cases {
        let init = s.init_upload(declared, 1_000_000).await;
        let r = s.send_upload(&init, bytes, declared).await;
        assert!(r.status().is_success(), "{}", r.status());
        let id = init["upload_id"].as_str().unwrap();
        let p = expect_problem(s.complete(id).await, 422, code).await;
        assert_eq!(p["status"], 422);
        assert_eq!(p["upload_id"], id);
        assert!(p["reason"].as_str().is_some_and(|r| !r.is_empty()), "{p}");
        assert!(
            !raw_object_exists(&s, &init),
            "a rejected object is deleted ({code})"
        );
        // The same answer again, and the upload shows as rejected.
        expect_problem(s.complete(id).await, 422, code).await;
        let v: Value = s.get(&format!("/uploads/{id}")).await.json().await.unwrap();
        assert_eq!(v["status"], "rejected");
        assert_eq!(v["reject_code"], code);
        // No job can run on it.
        let r = s
            .post("/jobs", json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 8, "height": 8}}))
            .await;
        expect_problem(r, 409, "upload_not_ready").await;
    }
    // An empty file.
    let init = s.init_upload("image/jpeg", 1000).await;
    let r = s.send_upload(&init, Vec::new(), "image/jpeg").await;
    match production() {
        None => drop(expect_problem(r, 400, "empty_upload").await),
        // S3 answers in its own XML: EntityTooSmall (content-length-range starts at 1).
        Some(_) => assert_eq!(r.status(), 400, "{}", r.text().await.unwrap()),
    }
    assert!(!raw_object_exists(&s, &init));
    assert!(staging_empty(&s.data_dir));
}

#[tokio::test]
async fn unknown_uploads_and_jobs() {
    let s = Server::start().await;
    for id in [
        "01a21c03-0000-7000-8000-000000000000",
        "not-a-uuid",
        "..%2F..%2Fetc",
    ] {
        expect_problem(s.complete(id).await, 404, "not_found").await;
        expect_problem(s.get(&format!("/jobs/{id}")).await, 404, "not_found").await;
        let r = s
            .post("/jobs", json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 8, "height": 8}}))
            .await;
        expect_problem(r, 404, "not_found").await;
    }
    // Pending upload: nothing sent yet.
    let init = s.init_upload("image/jpeg", 1000).await;
    expect_problem(
        s.complete(init["upload_id"].as_str().unwrap()).await,
        409,
        "upload_missing",
    )
    .await;
}

#[tokio::test]
async fn bad_job_requests() {
    let s = Server::start_with(Opts::default().arg("--worker-mode").arg("none")).await;
    let id = s.upload_ready(jpeg(40, 30), "image/jpeg").await;
    for (body, status, code) in [
        (
            json!({"job_type": "explode", "upload_id": id}),
            422,
            "invalid_parameters",
        ),
        (
            json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 0, "height": 5}}),
            422,
            "invalid_parameters",
        ),
        (
            json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 5}}),
            422,
            "invalid_parameters",
        ),
        (
            json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 5, "height": 5, "quality": 0}}),
            422,
            "invalid_parameters",
        ),
        (
            json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 99999, "height": 5}}),
            422,
            "invalid_parameters",
        ),
        (
            json!({"job_type": "transform", "upload_id": id, "params": {"width": 5, "fit": "cover"}}),
            422,
            "invalid_parameters",
        ),
        (
            json!({"job_type": "transform", "upload_id": id, "params": {"format": "bmp"}}),
            422,
            "invalid_parameters",
        ),
        (
            json!({"job_type": "thumbnail", "params": {"width": 5, "height": 5}}),
            422,
            "invalid_request",
        ),
        (
            json!({"job_type": "thumbnail", "upload_id": id, "bogus": 1}),
            422,
            "invalid_request",
        ),
    ] {
        expect_problem(s.post("/jobs", body.clone()).await, status, code).await;
    }
    let r = s
        .http
        .get(s.url("/objects/processed/tenants/default/x.jpg?expires=1&sig=00"))
        .send()
        .await
        .unwrap();
    expect_problem(r, 403, "invalid_signature").await;
    let r = s
        .http
        .get(s.url("/objects/processed/tenants/default/x.jpg"))
        .send()
        .await
        .unwrap();
    expect_problem(r, 400, "invalid_request").await;
}

#[tokio::test]
async fn corrupt_pixels_fail_the_job_permanently_in_the_worker() {
    let s = Server::start().await;
    // A valid header followed by garbage: completion (header only) accepts it, the worker's
    // full decode refuses it once, without retrying and without touching the API process.
    let mut bytes = jpeg(400, 300);
    let cut = bytes.len() / 3;
    bytes.truncate(cut);
    let id = s.upload_ready(bytes, "image/jpeg").await;
    let j = s
        .submit(json!({"job_type": "thumbnail", "upload_id": id, "params": {"width": 64, "height": 64}}))
        .await;
    let j = s
        .wait_job(j["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(j["status"], "failed", "{j}");
    assert_eq!(j["error_code"], "corrupt_image");
    assert_eq!(j["attempts"], 1, "permanent errors are not retried");
    assert!(j["error_message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(j["outputs"].as_array().unwrap().len(), 0);
    assert_eq!(reqwest::get(s.url("/healthz")).await.unwrap().status(), 200);
}
