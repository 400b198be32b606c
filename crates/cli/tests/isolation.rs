//! The tenant-isolation suite. Two tenants, A and B, each with keys, a ready upload, a pending
//! upload and a completed job. Then, for **every operation of the OpenAPI document**, tenant A
//! calls it with B's ids, keys and paths — as they are, percent-encoded, and dressed up as
//! traversals — and every answer must be 403 or 404 (or, for A's own lists and creations, A's
//! own data only), with none of B's ids, names or bytes in it. Afterwards B's resources are
//! checked intact.
//!
//! A route in the document without an entry in [`routes`] fails the suite (and so does an entry
//! whose route is gone): a new route cannot skip it. To cover a new route, add one `route(…)`
//! line to [`routes`] (and, if it needs a resource of B's that the fixture does not create yet,
//! create it in [`Fixture::new`] and add its ids to `Tenant` and [`Fixture::b_markers`]).
//!
//! Requests go over a raw TCP connection, so the request target is sent byte for byte: an HTTP
//! client library would resolve `..` and `%2e%2e` before sending.
#![expect(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::Duration;

use common::{Opts, Server, jpeg};
use serde_json::{Value, json};

const BOOT: &str = "isolation-bootstrap-key-0123456789";

// ------------------------------------------------------------------ raw HTTP

/// One request, sent byte for byte.
#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    target: String,
    auth: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
    /// An endless response (server-sent events): read what arrives for a moment, then stop.
    stream: bool,
}

impl Req {
    fn new(method: &'static str, target: impl Into<String>) -> Req {
        Req {
            method,
            target: target.into(),
            auth: None,
            content_type: None,
            body: Vec::new(),
            stream: false,
        }
    }
    fn streaming(mut self) -> Req {
        self.stream = true;
        self
    }
    fn json(mut self, v: Value) -> Req {
        self.content_type = Some("application/json".into());
        self.body = v.to_string().into_bytes();
        self
    }
    fn auth(mut self, key: &str) -> Req {
        self.auth = Some(key.to_owned());
        self
    }
    /// A multipart form like the upload URL expects: text fields, then a `file` part.
    fn multipart(mut self, fields: &[(&str, &str)], file: &[u8]) -> Req {
        let boundary = "isolation-boundary-7d1c";
        let mut b = Vec::new();
        for (k, v) in fields {
            b.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
                .as_bytes(),
            );
        }
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(file);
        b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.content_type = Some(format!("multipart/form-data; boundary={boundary}"));
        self.body = b;
        self
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(i) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..i])
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
}

fn send(base: &str, r: &Req) -> Resp {
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        r.method,
        r.target,
        r.body.len()
    );
    if let Some(k) = &r.auth {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if let Some(ct) = &r.content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&r.body).unwrap();
    let mut raw = Vec::new();
    if r.stream {
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
    } else {
        s.read_to_end(&mut raw).unwrap();
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head for {r:?}"));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if !r.stream
        && head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Resp { status, head, body }
}

// ------------------------------------------------------------------ the two tenants

/// What one tenant owns.
#[derive(Debug, Clone)]
struct Tenant {
    name: String,
    /// read, write, admin.
    key: String,
    key_id: String,
    /// A second key of the tenant (read only).
    reader_id: String,
    upload_id: String,
    upload_key: String,
    /// An upload initialised but never sent: its signed upload URL's query and raw key.
    pending_id: String,
    pending_key: String,
    pending_query: String,
    job_id: String,
    output_key: String,
    /// The signed download URL's query (`expires=…&sig=…`).
    output_query: String,
    filename: String,
    /// A slice of the uploaded bytes and of the output's.
    upload_bytes: Vec<u8>,
    output_bytes: Vec<u8>,
    /// A file of the file API: its folder, its path, and a slice of its bytes.
    file_folder: String,
    file_path: String,
    file_bytes: Vec<u8>,
    /// A batch of one job, and a webhook.
    batch_id: String,
    webhook_id: String,
    webhook_url: String,
}

struct Fixture {
    server: Server,
    a: Tenant,
    b: Tenant,
}

async fn create_key(s: &Server, tenant: &str, scopes: &[&str]) -> (String, String) {
    let r = s
        .http
        .post(s.url("/admin/keys"))
        .bearer_auth(BOOT)
        .json(&json!({"tenant": tenant, "scopes": scopes, "name": format!("{tenant} {scopes:?}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    (
        v["key"].as_str().unwrap().to_owned(),
        v["key_id"].as_str().unwrap().to_owned(),
    )
}

/// Creates tenant `name`'s keys and resources, acting as its admin key.
async fn make_tenant(s: &mut Server, name: &str, shade: u32) -> Tenant {
    let (key, key_id) = create_key(s, name, &["read", "write", "admin"]).await;
    let (_, reader_id) = create_key(s, name, &["read"]).await;
    s.key = key.clone();
    let as_t = &*s;
    let bytes = jpeg(300 + shade, 200);
    let filename = format!("{name}-secret-holiday.jpg");
    let r = as_t
        .post(
            "/uploads/init",
            json!({"content_type": "image/jpeg", "max_bytes": bytes.len(), "filename": filename}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let init: Value = r.json().await.unwrap();
    let r = as_t.send_upload(&init, bytes.clone(), "image/jpeg").await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let upload_id = init["upload_id"].as_str().unwrap().to_owned();
    assert_eq!(as_t.complete(&upload_id).await.status(), 200);
    let pending = as_t.init_upload("image/png", 1000).await;
    let pending_url = pending["url"].as_str().unwrap();
    let job = as_t
        .submit(json!({"job_type": "thumbnail", "upload_id": upload_id,
            "params": {"width": 64, "height": 64, "format": "png"}}))
        .await;
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    let done = as_t.wait_job(&job_id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let out_url = done["outputs"][0]["url"].as_str().unwrap().to_owned();
    let (status, _, out_bytes) = common::download(&out_url).await;
    assert_eq!(status, 200);
    let file_folder = format!("{name}-files/albums");
    let file_bytes = jpeg(260 + shade, 180);
    let r = as_t
        .http
        .post(as_t.url(&format!("/files/upload?folder={file_folder}")))
        .bearer_auth(&as_t.key)
        .multipart(
            reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(file_bytes.clone())
                    .file_name(format!("{name}-private.jpg")),
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let file_path = format!("{file_folder}/{name}-private.jpg");
    let r = as_t
        .post(
            "/batches",
            json!({"job_type": "thumbnail", "params": {"width": 16, "height": 16},
                "items": [{"upload_id": init["upload_id"]}]}),
        )
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let batch_id = r.json::<Value>().await.unwrap()["batch_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let webhook_url = format!("http://127.0.0.1:9/hooks/{name}-receiver");
    let r = as_t
        .post(
            "/webhooks",
            json!({"url": webhook_url, "event_types": ["job.completed"]}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let webhook_id = r.json::<Value>().await.unwrap()["webhook_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mid = |b: &[u8]| b[b.len() / 2..b.len() / 2 + 32].to_vec();
    // With S3 the signed URLs point at the bucket: A then tries a made-up signature on our
    // own signed routes instead.
    let our_query = |url: &str| match url.strip_prefix(&as_t.base) {
        Some(rest) => rest
            .split_once('?')
            .map(|x| x.1.to_owned())
            .unwrap_or_default(),
        None => "expires=9999999999&sig=0123".into(),
    };
    let t = Tenant {
        name: name.into(),
        key,
        key_id,
        reader_id,
        upload_key: init["key"].as_str().unwrap().to_owned(),
        upload_id,
        pending_id: pending["upload_id"].as_str().unwrap().to_owned(),
        pending_key: pending["key"].as_str().unwrap().to_owned(),
        pending_query: our_query(pending_url),
        job_id,
        output_key: done["outputs"][0]["key"].as_str().unwrap().to_owned(),
        output_query: our_query(&out_url),
        filename,
        upload_bytes: mid(&bytes),
        output_bytes: mid(&out_bytes),
        file_folder,
        file_path,
        file_bytes: mid(&file_bytes),
        batch_id,
        webhook_id,
        webhook_url,
    };
    s.key = BOOT.into();
    t
}

impl Fixture {
    async fn new() -> Fixture {
        let mut server = Server::start_with(Opts::default().env("API_KEY", BOOT)).await;
        let a = make_tenant(&mut server, "tenant-a", 0).await;
        let b = make_tenant(&mut server, "tenant-b", 40).await;
        Fixture { server, a, b }
    }

    /// What of B's must never reach A: ids, names, keys, and bytes.
    fn b_markers(&self) -> Vec<(String, Vec<u8>)> {
        let b = &self.b;
        let mut m: Vec<(String, Vec<u8>)> = [
            ("tenant name", &b.name),
            ("key id", &b.key_id),
            ("reader key id", &b.reader_id),
            ("upload id", &b.upload_id),
            ("upload key", &b.upload_key),
            ("pending upload id", &b.pending_id),
            ("pending key", &b.pending_key),
            ("job id", &b.job_id),
            ("output key", &b.output_key),
            ("filename", &b.filename),
            ("key secret", &b.key),
            ("file folder", &b.file_folder),
            ("file path", &b.file_path),
            ("batch id", &b.batch_id),
            ("webhook id", &b.webhook_id),
            ("webhook url", &b.webhook_url),
        ]
        .into_iter()
        .map(|(what, v)| (what.to_owned(), v.as_bytes().to_vec()))
        .collect();
        m.push(("upload bytes".into(), b.upload_bytes.clone()));
        m.push(("output bytes".into(), b.output_bytes.clone()));
        m.push(("file bytes".into(), b.file_bytes.clone()));
        m
    }
}

// ------------------------------------------------------------------ probes

/// What a probe must get back. Every probe also checks that nothing of B's is in the answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// 403 or 404.
    Denied,
    /// 400, 403 or 404: B's file paths, where a dressed-up path is refused as malformed (400
    /// `invalid_path`) before anything is looked up.
    Refused,
    /// Any status: the call acts on A's own data (A's lists, A's new upload); only the
    /// no-leak check applies.
    OwnOnly,
}

#[derive(Debug, Clone)]
struct Probe {
    req: Req,
    expect: Expect,
}

fn denied(reqs: impl IntoIterator<Item = Req>) -> Vec<Probe> {
    reqs.into_iter()
        .map(|req| Probe {
            req,
            expect: Expect::Denied,
        })
        .collect()
}

fn refused(reqs: impl IntoIterator<Item = Req>) -> Vec<Probe> {
    reqs.into_iter()
        .map(|req| Probe {
            req,
            expect: Expect::Refused,
        })
        .collect()
}

/// B's file path (or folder) and its disguises, for a URL path (`/files/download/{here}`).
fn file_variants(b: &str, a: &str) -> Vec<String> {
    let mut v = variants(b, a);
    v.push(format!("{a}/../../{b}"));
    v.push(format!("%2e%2e%2f{b}"));
    v.push(format!("tenants/tenant-b/files/{b}"));
    v
}

fn own(reqs: impl IntoIterator<Item = Req>) -> Vec<Probe> {
    reqs.into_iter()
        .map(|req| Probe {
            req,
            expect: Expect::OwnOnly,
        })
        .collect()
}

fn enc_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// B's value `b` as a path segment, and the ways A might dress it up to escape its own
/// namespace (`a` is A's value of the same kind).
fn variants(b: &str, a: &str) -> Vec<String> {
    let b_tenant = "tenant-b";
    vec![
        b.to_owned(),
        enc_all(b),
        b.to_ascii_uppercase(),
        format!("{a}/../{b}"),
        format!("{a}%2F..%2F{b}"),
        format!("{a}%2f%2e%2e%2f{b}"),
        format!("..%2F{b}"),
        format!("%2e%2e/{b_tenant}/{b}"),
        format!("..%252F{b_tenant}%252F{b}"),
        format!("{a}%00{b}"),
        format!("./{b}"),
        format!("{b}/"),
        format!("%2E%2E%2F%2E%2E%2Ftenants%2F{b_tenant}%2F{b}"),
        format!("..\\{b_tenant}\\{b}"),
    ]
}

/// A's calls for one route.
type Build = fn(&Tenant, &Tenant) -> Vec<Probe>;

struct Route {
    method: &'static str,
    path: &'static str,
    /// Needs no credential (health, docs, signed URLs): A's key is not sent, or does not matter.
    public: bool,
    build: Build,
}

fn route(method: &'static str, path: &'static str, build: Build) -> Route {
    Route {
        method,
        path,
        public: false,
        build,
    }
}

fn public(method: &'static str, path: &'static str, build: Build) -> Route {
    Route {
        method,
        path,
        public: true,
        build,
    }
}

/// Every route of the OpenAPI document and how A attacks it (`a`: A's own things, `b`: B's).
/// Add a line here for each new route.
fn routes() -> Vec<Route> {
    vec![
        public("GET", "/healthz", |_, _| own([Req::new("GET", "/healthz")])),
        public("GET", "/health", |_, _| own([Req::new("GET", "/health")])),
        route("POST", "/uploads/init", |_, b| {
            own([
                Req::new("POST", "/uploads/init")
                    .json(json!({"content_type": "image/jpeg", "max_bytes": 10})),
                // A tenant named in the body is refused (unknown field), never obeyed.
                Req::new("POST", "/uploads/init")
                    .json(json!({"content_type": "image/jpeg", "max_bytes": 10, "tenant": b.name})),
                Req::new("POST", format!("/uploads/init?tenant={}", b.name))
                    .json(json!({"content_type": "image/jpeg", "max_bytes": 10})),
            ])
        }),
        route("GET", "/uploads/{upload_id}", |a, b| {
            let mut v = variants(&b.upload_id, &a.upload_id);
            v.extend(variants(&b.pending_id, &a.pending_id));
            denied(v.iter().map(|id| Req::new("GET", format!("/uploads/{id}"))))
        }),
        route("POST", "/uploads/{upload_id}/complete", |a, b| {
            let mut v = variants(&b.upload_id, &a.upload_id);
            v.extend(variants(&b.pending_id, &a.pending_id));
            denied(
                v.iter()
                    .map(|id| Req::new("POST", format!("/uploads/{id}/complete"))),
            )
        }),
        // Signed, no credential: A's own signature (or none) on B's upload.
        public("POST", "/uploads/{upload_id}/object", |a, b| {
            let fields = [
                ("key", b.pending_key.as_str()),
                ("Content-Type", "image/png"),
            ];
            let file = common::png(4, 4);
            let mut v = Vec::new();
            for id in variants(&b.pending_id, &a.pending_id) {
                for q in [a.pending_query.as_str(), "expires=9999999999&sig=00"] {
                    v.push(
                        Req::new("POST", format!("/uploads/{id}/object?{q}"))
                            .multipart(&fields, &file),
                    );
                }
            }
            denied(v)
        }),
        route("POST", "/jobs", |a, b| {
            let mut v = variants(&b.upload_id, &a.upload_id);
            v.push(b.upload_key.clone());
            denied(v.into_iter().map(|id| {
                Req::new("POST", "/jobs").json(json!({"job_type": "thumbnail", "upload_id": id,
                        "params": {"width": 8, "height": 8}}))
            }))
        }),
        route("GET", "/jobs", |a, b| {
            own([
                Req::new("GET", "/jobs"),
                Req::new("GET", "/jobs?tenant=tenant-b"),
                Req::new("GET", format!("/jobs?limit=200&cursor={}", a.job_id)),
                Req::new("GET", format!("/jobs?limit=200&cursor={}", b.job_id)),
            ])
        }),
        route("GET", "/jobs/{job_id}", |a, b| {
            denied(
                variants(&b.job_id, &a.job_id)
                    .iter()
                    .map(|id| Req::new("GET", format!("/jobs/{id}"))),
            )
        }),
        // Signed, no credential: A's own signature (or none) on B's output.
        public("GET", "/objects/{bucket}/{key}", |a, b| {
            let mut v = Vec::new();
            for bucket in ["processed", "raw"] {
                for key in [&b.output_key, &b.upload_key] {
                    for k in variants(key, &a.output_key) {
                        for q in [a.output_query.as_str(), "expires=9999999999&sig=00"] {
                            v.push(Req::new("GET", format!("/objects/{bucket}/{k}?{q}")));
                        }
                    }
                }
            }
            denied(v)
        }),
        route("POST", "/jobs/{job_id}/cancel", |a, b| {
            denied(
                variants(&b.job_id, &a.job_id)
                    .iter()
                    .map(|id| Req::new("POST", format!("/jobs/{id}/cancel"))),
            )
        }),
        route("POST", "/jobs/{job_id}/retry", |a, b| {
            denied(
                variants(&b.job_id, &a.job_id)
                    .iter()
                    .map(|id| Req::new("POST", format!("/jobs/{id}/retry"))),
            )
        }),
        route("POST", "/jobs/redrive", |_, b| {
            own([
                Req::new("POST", "/jobs/redrive").json(json!({})),
                Req::new("POST", format!("/jobs/redrive?tenant={}", b.name)).json(json!({})),
            ])
        }),
        route("GET", "/jobs/{job_id}/events", |a, b| {
            denied(
                variants(&b.job_id, &a.job_id)
                    .iter()
                    .map(|id| Req::new("GET", format!("/jobs/{id}/events"))),
            )
        }),
        route("GET", "/events", |_, b| {
            // A's own stream: none of B's events in it.
            own([
                Req::new("GET", "/events").streaming(),
                Req::new("GET", format!("/events?tenant={}", b.name)).streaming(),
            ])
        }),
        route("GET", "/webhooks", |_, b| {
            own([
                Req::new("GET", "/webhooks"),
                Req::new("GET", format!("/webhooks?tenant={}", b.name)),
            ])
        }),
        route("DELETE", "/webhooks/{webhook_id}", |a, b| {
            denied(
                variants(&b.webhook_id, &a.webhook_id)
                    .iter()
                    .map(|id| Req::new("DELETE", format!("/webhooks/{id}"))),
            )
        }),
        route("GET", "/webhooks/{webhook_id}/deliveries", |a, b| {
            denied(
                variants(&b.webhook_id, &a.webhook_id)
                    .iter()
                    .map(|id| Req::new("GET", format!("/webhooks/{id}/deliveries"))),
            )
        }),
        route("POST", "/batches", |a, b| {
            // B's upload in A's batch: refused as a whole.
            let mut v = variants(&b.upload_id, &a.upload_id);
            v.push(b.upload_key.clone());
            refused(v.into_iter().map(|id| {
                Req::new("POST", "/batches").json(json!({"job_type": "thumbnail",
                    "params": {"width": 8, "height": 8}, "items": [{"upload_id": id}]}))
            }))
        }),
        route("GET", "/batches/{batch_id}", |a, b| {
            denied(
                variants(&b.batch_id, &a.batch_id)
                    .iter()
                    .map(|id| Req::new("GET", format!("/batches/{id}"))),
            )
        }),
        route("GET", "/batches/{batch_id}/jobs", |a, b| {
            denied(
                variants(&b.batch_id, &a.batch_id)
                    .iter()
                    .map(|id| Req::new("GET", format!("/batches/{id}/jobs"))),
            )
        }),
        route("POST", "/batches/{batch_id}/cancel", |a, b| {
            denied(
                variants(&b.batch_id, &a.batch_id)
                    .iter()
                    .map(|id| Req::new("POST", format!("/batches/{id}/cancel"))),
            )
        }),
        route("GET", "/files/download/{path}", |a, b| {
            refused(
                file_variants(&b.file_path, &a.file_path)
                    .iter()
                    .map(|p| Req::new("GET", format!("/files/download/{p}"))),
            )
        }),
        route("GET", "/files/metadata/{path}", |a, b| {
            let mut v = file_variants(&b.file_path, &a.file_path);
            v.extend(file_variants(&b.file_folder, &a.file_folder));
            refused(
                v.iter()
                    .map(|p| Req::new("GET", format!("/files/metadata/{p}"))),
            )
        }),
        route("GET", "/files/presigned-url/{path}", |a, b| {
            refused(
                file_variants(&b.file_path, &a.file_path)
                    .iter()
                    .map(|p| Req::new("GET", format!("/files/presigned-url/{p}?attachment=x.jpg"))),
            )
        }),
        route("DELETE", "/files/delete/{path}", |a, b| {
            refused(
                file_variants(&b.file_path, &a.file_path)
                    .iter()
                    .map(|p| Req::new("DELETE", format!("/files/delete/{p}"))),
            )
        }),
        route("POST", "/files/delete-multiple", |a, b| {
            // Per-path results: each "not found" or "invalid", none touching B's file.
            own([Req::new("POST", "/files/delete-multiple")
                .json(json!({"paths": file_variants(&b.file_path, &a.file_path)}))])
        }),
        route("GET", "/files/list", |a, b| {
            refused(
                file_variants(&b.file_folder, &a.file_folder)
                    .iter()
                    .flat_map(|f| {
                        [
                            Req::new("GET", format!("/files/list?folder={f}")),
                            Req::new("GET", format!("/files/list?folder={f}&recursive=true")),
                        ]
                    }),
            )
            .into_iter()
            .chain(own([
                Req::new("GET", "/files/list?recursive=true&limit=1000"),
                Req::new("GET", "/files/list?tenant=tenant-b&recursive=true"),
            ]))
            .collect()
        }),
        route("DELETE", "/files/folder/delete", |a, b| {
            refused(
                file_variants(&b.file_folder, &a.file_folder)
                    .iter()
                    .map(|f| Req::new("DELETE", format!("/files/folder/delete?path={f}"))),
            )
        }),
        route("POST", "/files/copy", |a, b| {
            let mut v: Vec<Req> = file_variants(&b.file_path, &a.file_path)
                .iter()
                .chain(file_variants(&b.file_folder, &a.file_folder).iter())
                .map(|src| {
                    Req::new("POST", "/files/copy")
                        .json(json!({"source": src, "destination": "stolen", "overwrite": true}))
                })
                .collect();
            v.push(Req::new("POST", "/files/copy").json(
                json!({"source": format!("tenants/tenant-b/files/{}", b.file_path), "destination": "stolen2"}),
            ));
            refused(v)
        }),
        route("POST", "/files/move", |a, b| {
            refused(
                file_variants(&b.file_path, &a.file_path)
                    .iter()
                    .chain(file_variants(&b.file_folder, &a.file_folder).iter())
                    .map(|src| {
                        Req::new("POST", "/files/move").json(
                            json!({"source": src, "destination": "stolen", "overwrite": true}),
                        )
                    }),
            )
        }),
        route("POST", "/admin/keys", |_, b| {
            denied([
                Req::new("POST", "/admin/keys").json(json!({"tenant": b.name, "scopes": ["read"]})),
                Req::new("POST", "/admin/keys")
                    .json(json!({"tenant": "TENANT-B", "scopes": ["read"]})),
                Req::new("POST", "/admin/keys").json(json!({"scopes": ["read", "global"]})),
            ])
            .into_iter()
            .chain(own([Req::new(
                "POST",
                format!("/admin/keys?tenant={}", b.name),
            )
            .json(json!({"scopes": ["read"], "name": "own"}))]))
            .collect()
        }),
        route("GET", "/admin/keys", |_, b| {
            denied([Req::new("GET", format!("/admin/keys?tenant={}", b.name))])
                .into_iter()
                .chain(own([Req::new("GET", "/admin/keys")]))
                .collect()
        }),
        route("DELETE", "/admin/keys/{key_id}", |a, b| {
            let mut v = variants(&b.key_id, &a.reader_id);
            v.extend(variants(&b.reader_id, &a.reader_id));
            denied(
                v.iter()
                    .map(|id| Req::new("DELETE", format!("/admin/keys/{id}"))),
            )
        }),
        route("GET", "/admin/audit", |_, b| {
            denied([Req::new("GET", format!("/admin/audit?tenant={}", b.name))])
                .into_iter()
                .chain(own([
                    Req::new("GET", "/admin/audit"),
                    Req::new("GET", "/admin/audit?before=999999999&limit=500"),
                ]))
                .collect()
        }),
        // Tenants: A is its own tenant's admin, not a global one. It may read its own tenant;
        // creating, changing, suspending or reactivating any tenant — B's above all — is 403.
        route("POST", "/admin/tenants", |_, b| {
            denied([
                Req::new("POST", "/admin/tenants").json(json!({"tenant_id": b.name})),
                Req::new("POST", "/admin/tenants")
                    .json(json!({"tenant_id": "tenant-c", "status": "active"})),
            ])
        }),
        route("GET", "/admin/tenants", |_, b| {
            own([
                Req::new("GET", "/admin/tenants"),
                Req::new("GET", format!("/admin/tenants?tenant={}", b.name)),
            ])
        }),
        route("GET", "/admin/tenants/{tenant_id}", |a, b| {
            denied(
                variants(&b.name, &a.name)
                    .iter()
                    .map(|t| Req::new("GET", format!("/admin/tenants/{t}"))),
            )
        }),
        route("PATCH", "/admin/tenants/{tenant_id}", |a, b| {
            let mut v = variants(&b.name, &a.name);
            v.push(a.name.clone());
            denied(v.iter().map(|t| {
                Req::new("PATCH", format!("/admin/tenants/{t}"))
                    .json(json!({"display_name": "taken over", "status": "suspended"}))
            }))
        }),
        route("POST", "/admin/tenants/{tenant_id}/suspend", |a, b| {
            let mut v = variants(&b.name, &a.name);
            v.push(a.name.clone());
            denied(
                v.iter()
                    .map(|t| Req::new("POST", format!("/admin/tenants/{t}/suspend"))),
            )
        }),
        route("POST", "/admin/tenants/{tenant_id}/reactivate", |a, b| {
            denied(
                variants(&b.name, &a.name)
                    .iter()
                    .map(|t| Req::new("POST", format!("/admin/tenants/{t}/reactivate"))),
            )
        }),
        // Last: these create entries named like B's in A's own tree, which the probes above
        // would then (rightly) find as A's.
        route("POST", "/webhooks", |_, b| {
            own([Req::new("POST", "/webhooks")
                .json(json!({"url": "http://127.0.0.1:9/a-hook", "event_types": ["job.completed"]}))
                .clone()]
            .into_iter()
            .chain([Req::new("POST", format!("/webhooks?tenant={}", b.name))
                .json(json!({"url": "http://127.0.0.1:9/a-hook", "event_types": ["job.failed"]}))]))
        }),
        route("POST", "/files/upload", |_, b| {
            // A file "into B's folder" lands in A's own tree.
            own([
                Req::new("POST", format!("/files/upload?folder={}", b.file_folder))
                    .multipart(&[], &jpeg(8, 8)),
            ])
        }),
        route("POST", "/files/upload-multiple", |_, b| {
            own([Req::new(
                "POST",
                format!("/files/upload-multiple?folder={}", b.file_folder),
            )
            .multipart(&[], &jpeg(8, 8))])
        }),
        route("POST", "/files/folder/create", |_, b| {
            own([Req::new("POST", "/files/folder/create").json(json!({"path": b.file_folder}))])
        }),
        route("POST", "/files/presigned-upload", |_, b| {
            // An upload "to B's path" targets A's own tree.
            own([Req::new(
                "POST",
                format!("/files/presigned-upload?file_path={}", b.file_path),
            )])
        }),
    ]
}

/// Every operation (METHOD, path) of the served OpenAPI document.
async fn documented(s: &Server) -> BTreeSet<(String, String)> {
    let doc: Value = s
        .http
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                out.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_a_cannot_reach_tenant_b_on_any_route() {
    let fx = Fixture::new().await;
    let (a, b) = (&fx.a, &fx.b);
    let table = routes();

    // The table covers the document exactly.
    let doc = documented(&fx.server).await;
    let covered: BTreeSet<(String, String)> = table
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let missing: Vec<_> = doc.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "routes in /openapi.json without an isolation probe: {missing:?}. Add a `route(…)` line \
         for each to `routes()` in crates/cli/tests/isolation.rs"
    );
    let stale: Vec<_> = covered.difference(&doc).collect();
    assert!(
        stale.is_empty(),
        "probes for routes no longer documented: {stale:?}"
    );

    let markers = fx.b_markers();
    // B's key id with A's secret: authentication fails, whatever the route.
    let a_secret = a.key.rsplit_once('_').unwrap().1;
    let forged = format!("pk_{}_{a_secret}", b.key_id);
    let mut probes = 0usize;
    for r in &table {
        let built = (r.build)(a, b);
        assert!(!built.is_empty(), "{} {} has no probe", r.method, r.path);
        // Probes with B's key id and A's secret: 401, or 404 where the target matches no route
        // at all (the router answers before authentication).
        let mut all: Vec<(Probe, Option<&[u16]>)> = Vec::new();
        for p in built {
            let mut with_a = p.clone();
            if !r.public {
                with_a.req = with_a.req.auth(&a.key);
                all.push((
                    Probe {
                        req: p.req.clone().auth(&forged),
                        expect: Expect::Denied,
                    },
                    Some(&[401, 404]),
                ));
            }
            all.push((with_a, None));
        }
        for (p, exact) in all {
            let res = send(&fx.server.base, &p.req);
            probes += 1;
            let what = format!(
                "{} {} as A ({:?}) → {}: {}",
                p.req.method,
                p.req.target,
                p.expect,
                res.status,
                String::from_utf8_lossy(&res.body)
            );
            match (exact, p.expect) {
                (Some(codes), _) => assert!(codes.contains(&res.status), "{what}"),
                (None, Expect::Denied) => {
                    assert!([403, 404].contains(&res.status), "expected 403/404: {what}")
                }
                (None, Expect::Refused) => {
                    assert!(
                        [400, 403, 404].contains(&res.status),
                        "expected 400/403/404: {what}"
                    )
                }
                (None, Expect::OwnOnly) => assert!(res.status < 500, "{what}"),
            }
            // Nothing of B's that A did not send itself.
            let sent = format!("{} {}", p.req.target, String::from_utf8_lossy(&p.req.body));
            for (name, m) in &markers {
                if find(sent.as_bytes(), m) {
                    continue;
                }
                assert!(
                    !find(&res.body, m) && !find(res.head.as_bytes(), m),
                    "B's {name} leaked: {what}"
                );
            }
        }
    }
    eprintln!("{probes} probes over {} routes", table.len());

    // B's things are untouched: its keys work, its upload and job are as they were, and A's
    // DELETEs revoked nothing of B's.
    let as_b = |path: &str| Req::new("GET", path).auth(&b.key);
    let base = &fx.server.base;
    assert_eq!(
        send(base, &as_b(&format!("/uploads/{}", b.upload_id))).status,
        200
    );
    let job: Value =
        serde_json::from_slice(&send(base, &as_b(&format!("/jobs/{}", b.job_id))).body).unwrap();
    assert_eq!(job["status"], "completed");
    let hooks: Value = serde_json::from_slice(&send(base, &as_b("/webhooks")).body).unwrap();
    assert!(
        hooks.to_string().contains(&b.webhook_id),
        "B's webhook is still there: {hooks}"
    );
    let batch: Value =
        serde_json::from_slice(&send(base, &as_b(&format!("/batches/{}", b.batch_id))).body)
            .unwrap();
    assert!(
        batch["cancelled_at"].is_null(),
        "B's batch was not cancelled: {batch}"
    );
    let file = send(base, &as_b(&format!("/files/download/{}", b.file_path)));
    assert_eq!(file.status, 200, "B's file is still there");
    assert!(find(&file.body, &b.file_bytes), "with its bytes");
    let listed: Value =
        serde_json::from_slice(&send(base, &as_b("/files/list?recursive=true&limit=1000")).body)
            .unwrap();
    let listed: Vec<&str> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        vec![
            "tenant-b-files",
            "tenant-b-files/albums",
            b.file_path.as_str()
        ],
        "nothing of A's landed in B's tree"
    );
    let keys: Value = serde_json::from_slice(&send(base, &as_b("/admin/keys")).body).unwrap();
    let keys = keys["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k["status"] == "active"), "{keys:?}");
    // B is still active, untouched by A's attempts.
    let tenant: Value =
        serde_json::from_slice(&send(base, &as_b(&format!("/admin/tenants/{}", b.name))).body)
            .unwrap();
    assert_eq!(tenant["status"], "active", "{tenant}");
    assert!(tenant["display_name"].is_null(), "{tenant}");
    // …and the audit log of B shows only the bootstrap's actions.
    let audit: Value = serde_json::from_slice(&send(base, &as_b("/admin/audit")).body).unwrap();
    for e in audit["entries"].as_array().unwrap() {
        assert_eq!(e["actor"], "bootstrap", "{e}");
    }
}
