//! The security edge, black-box: security headers on every kind of response, CORS preflight and
//! rejection, rate limits per credential and per client address, the concurrency cap, URL and
//! header size limits.
#![expect(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Opts, Server, command, expect_problem, tempdir};
use serde_json::{Value, json};

const BOOT: &str = "edge-test-bootstrap-key-0123456789";

fn opts() -> Opts {
    Opts::default().env("API_KEY", BOOT)
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn assert_security_headers(r: &reqwest::Response, what: &str) {
    assert_eq!(
        header(r, "x-content-type-options").as_deref(),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        header(r, "x-frame-options").as_deref(),
        Some("DENY"),
        "{what}"
    );
    assert_eq!(
        header(r, "referrer-policy").as_deref(),
        Some("no-referrer"),
        "{what}"
    );
    let csp = header(r, "content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{what}: {csp}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn security_headers_are_on_every_response() {
    let s = Server::start_with(opts()).await;
    let c = &s.http;
    let upload = s.upload_ready(common::jpeg(64, 48), "image/jpeg").await;
    let job = s
        .submit(json!({"job_type": "thumbnail", "upload_id": upload, "params": {"width": 16, "height": 16}}))
        .await;
    let done = s
        .wait_job(job["job_id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    let out = done["outputs"][0]["url"].as_str().unwrap().to_owned();
    let mut cases = vec![
        ("healthz", c.get(s.url("/healthz")).send().await.unwrap()),
        ("health", c.get(s.url("/health")).send().await.unwrap()),
        ("docs", c.get(s.url("/docs")).send().await.unwrap()),
        (
            "openapi",
            c.get(s.url("/openapi.json")).send().await.unwrap(),
        ),
        ("401", c.get(s.url("/jobs")).send().await.unwrap()),
        ("200", s.get("/jobs").await),
        ("404 route", s.get("/nope").await),
        (
            "404 job",
            s.get("/jobs/00000000-0000-0000-0000-000000000000").await,
        ),
        ("405", c.put(s.url("/jobs")).send().await.unwrap()),
        (
            "422",
            s.post(
                "/uploads/init",
                json!({"content_type": "text/html", "max_bytes": 1}),
            )
            .await,
        ),
    ];
    // Our own signed downloads (with S3 the URL is the bucket's, whose headers are not ours).
    if out.starts_with(&s.base) {
        cases.push(("signed download", c.get(&out).send().await.unwrap()));
        cases.push((
            "bad signature",
            c.get(format!("{out}0")).send().await.unwrap(),
        ));
    }
    for (what, r) in &cases {
        assert_security_headers(r, what);
        assert!(
            header(r, "strict-transport-security").is_none(),
            "{what}: no HSTS over plain HTTP"
        );
    }
    // Reached over TLS (an https public URL, behind a TLS proxy): HSTS too.
    // (It announces its public URL, so it is started on a known port here.)
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempdir();
    let mut child = command(&dir)
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("API_KEY", BOOT)
        .env("PHOTO_API_PUBLIC_URL", "https://photos.example.test")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let r = loop {
        if let Ok(r) = c
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the https-public-URL server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_security_headers(&r, "tls");
    assert!(
        header(&r, "strict-transport-security")
            .unwrap()
            .contains("max-age=")
    );
}

fn preflight(s: &Server, origin: &str, method: &str) -> reqwest::RequestBuilder {
    s.http
        .request(reqwest::Method::OPTIONS, s.url("/jobs"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_allows_exactly_the_configured_origins() {
    let s = Server::start_with(opts().env(
        "CORS_ORIGINS",
        "https://app.example.test, https://admin.example.test/",
    ))
    .await;
    let ok = "https://app.example.test";
    let r = preflight(&s, ok, "POST").send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(ok)
    );
    assert!(
        header(&r, "access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    let allowed = header(&r, "access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    assert!(
        header(&r, "access-control-allow-credentials").is_none(),
        "credentials off by default"
    );
    assert!(
        header(&r, "vary")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("origin")
    );
    assert_security_headers(&r, "preflight");
    let admin = preflight(&s, "https://admin.example.test", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&admin, "access-control-allow-origin").as_deref(),
        Some("https://admin.example.test")
    );

    // Not listed, or merely similar: no CORS grant (the browser refuses the call).
    for bad in [
        "https://evil.example.test",
        "https://app.example.test.evil.test",
        "http://app.example.test",
        "https://APP.example.test:443",
        "null",
    ] {
        let r = preflight(&s, bad, "POST").send().await.unwrap();
        assert!(header(&r, "access-control-allow-origin").is_none(), "{bad}");
        let r = s
            .http
            .get(s.url("/jobs"))
            .bearer_auth(&s.key)
            .header("Origin", bad)
            .send()
            .await
            .unwrap();
        assert!(header(&r, "access-control-allow-origin").is_none(), "{bad}");
    }
    // An actual request from an allowed origin: granted, and the useful headers are exposed.
    let r = s
        .http
        .get(s.url("/jobs"))
        .bearer_auth(&s.key)
        .header("Origin", ok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(ok)
    );
    let exposed = header(&r, "access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("x-request-id") && exposed.contains("retry-after"),
        "{exposed}"
    );

    // With credentials: an explicit list only; `*` with credentials refuses to start.
    let creds = Server::start_with(
        opts()
            .env("CORS_ORIGINS", ok)
            .env("PHOTO_API_CORS_CREDENTIALS", "true"),
    )
    .await;
    let r = preflight(&creds, ok, "GET").send().await.unwrap();
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(ok)
    );
    assert_eq!(
        header(&r, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let dir = tempdir();
    let out = command(&dir)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .env("CORS_ORIGINS", "*")
        .env("PHOTO_API_CORS_CREDENTIALS", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CORS_ORIGINS") && err.contains("PHOTO_API_CORS_CREDENTIALS"),
        "{err}"
    );
    // `*` alone: any origin, never with credentials.
    let any = Server::start_with(opts().env("CORS_ORIGINS", "*")).await;
    let r = preflight(&any, "https://whoever.example.test", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert!(header(&r, "access-control-allow-credentials").is_none());
}

async fn new_key(s: &Server, scopes: Value) -> String {
    let r = s
        .http
        .post(s.url("/admin/keys"))
        .bearer_auth(BOOT)
        .json(&json!({"tenant": "acme", "scopes": scopes}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_per_credential_and_scope() {
    // Per hour, so no token comes back while the test runs.
    let s = Server::start_with(
        opts()
            .env("PHOTO_API_RATE_LIMIT_READ", "5/h")
            .env("PHOTO_API_RATE_LIMIT_WRITE", "2/h")
            .env("PHOTO_API_RATE_LIMIT_ADDRESS", "off"),
    )
    .await;
    let a = new_key(&s, json!(["read", "write"])).await;
    let b = new_key(&s, json!(["read", "write"])).await;
    let get = |k: &str| s.http.get(s.url("/jobs")).bearer_auth(k.to_owned()).send();
    for left in (0..5).rev() {
        let r = get(&a).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "ratelimit-limit").as_deref(), Some("5"));
        assert_eq!(header(&r, "ratelimit-remaining"), Some(left.to_string()));
        assert_eq!(header(&r, "ratelimit-policy").as_deref(), Some("5;w=3600"));
    }
    let r = get(&a).await.unwrap();
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=720).contains(&retry), "one token per 720 s: {retry}");
    assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some("0"));
    assert!(header(&r, "ratelimit-reset").is_some());
    assert_security_headers(&r, "429");
    expect_problem(r, 429, "rate_limited").await;
    // Another key has its own bucket; the same key's writes have theirs.
    assert_eq!(get(&b).await.unwrap().status(), 200);
    let init = |k: &str| {
        s.http
            .post(s.url("/uploads/init"))
            .bearer_auth(k.to_owned())
            .json(&json!({"content_type": "image/jpeg", "max_bytes": 10}))
            .send()
    };
    assert_eq!(init(&a).await.unwrap().status(), 201);
    assert_eq!(init(&a).await.unwrap().status(), 201);
    expect_problem(init(&a).await.unwrap(), 429, "rate_limited").await;
    // Unauthenticated requests are not counted against a key.
    expect_problem(
        s.http.get(s.url("/jobs")).send().await.unwrap(),
        401,
        "unauthenticated",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_per_client_address() {
    let s = Server::start_with(
        opts()
            .env("PHOTO_API_RATE_LIMIT_ADDRESS", "4/h")
            .env("PHOTO_API_RATE_LIMIT_READ", "off"),
    )
    .await;
    // Any request counts, authenticated or not, on any route.
    for path in ["/healthz", "/jobs", "/health", "/nope"] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_ne!(r.status(), 429, "{path}");
        assert_eq!(
            header(&r, "ratelimit-limit").as_deref(),
            Some("4"),
            "{path}"
        );
    }
    let r = s.get("/jobs").await;
    assert!(header(&r, "retry-after").is_some());
    expect_problem(r, 429, "rate_limited").await;
    let r = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn urls_and_headers_have_size_limits() {
    let s = Server::start_with(opts()).await;
    let long = format!("/jobs?status={}", "a".repeat(9000));
    expect_problem(s.get(&long).await, 414, "uri_too_long").await;
    let r = s
        .http
        .get(s.url("/jobs"))
        .bearer_auth(&s.key)
        .header("x-padding", "b".repeat(40_000))
        .send()
        .await
        .unwrap();
    expect_problem(r, 431, "headers_too_large").await;
    // Within the limits all is well; a large JSON body is still refused by the body limit.
    assert_eq!(s.get(&format!("/jobs?limit={}", 5)).await.status(), 200);
    let r = s
        .http
        .post(s.url("/jobs"))
        .bearer_auth(&s.key)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"job_type\":\"thumbnail\",\"pad\":\"{}\"}}",
            "c".repeat(200_000)
        ))
        .send()
        .await
        .unwrap();
    expect_problem(r, 413, "payload_too_large").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_beyond_the_concurrency_cap_get_503() {
    let s = Server::start_with(opts().env("PHOTO_API_MAX_CONCURRENT_REQUESTS", "1")).await;
    // Hold one request open: a JSON body that never finishes arriving.
    let addr = s.base.strip_prefix("http://").unwrap().to_owned();
    let mut held = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST /jobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"job_type\":",
        s.key
    );
    held.write_all(head.as_bytes()).unwrap();
    held.flush().unwrap();
    // Until the server has taken it, other requests may still pass; then they get 503.
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let r = s.http.get(s.url("/healthz")).send().await.unwrap();
        if r.status() == 503 {
            break r;
        }
        assert!(Instant::now() < deadline, "the cap never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("1"));
    assert_security_headers(&refused, "503");
    expect_problem(refused, 503, "service_unavailable").await;
    // The held request ends (the client goes away): the slot is free again.
    held.shutdown(std::net::Shutdown::Both).unwrap();
    let mut sink = Vec::new();
    let _ = held.read_to_end(&mut sink);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.http.get(s.url("/healthz")).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn filenames_are_sanitised_before_they_are_stored_or_echoed() {
    let s = Server::start_with(opts()).await;
    let init = |name: Value| {
        s.http
            .post(s.url("/uploads/init"))
            .bearer_auth(&s.key)
            .json(&json!({"content_type": "image/jpeg", "max_bytes": 100, "filename": name}))
            .send()
    };
    for (given, stored) in [
        (
            json!("../../tenants/other/x\u{202E}gpj.exe\u{0007}.jpg"),
            "xgpj.exe.jpg".to_owned(),
        ),
        (json!("C:\\photos\\\u{200B}cat.png"), "cat.png".to_owned()),
        (
            json!(format!("{}.jpg", "n".repeat(1000))),
            format!("{}.jpg", "n".repeat(251)),
        ),
    ] {
        let r = init(given.clone()).await.unwrap();
        assert_eq!(r.status(), 201, "{given}");
        let id = r.json::<Value>().await.unwrap()["upload_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let v: Value = s.get(&format!("/uploads/{id}")).await.json().await.unwrap();
        assert_eq!(v["filename"], stored.as_str(), "{given}");
    }
    for nothing in ["../", " \u{202E} ", "\u{0001}"] {
        let r = init(json!(nothing)).await.unwrap();
        expect_problem(r, 422, "invalid_request").await;
    }
}
