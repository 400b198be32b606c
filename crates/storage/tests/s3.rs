//! The ObjectStore contract on both adapters, and the S3 adapter against a real S3 server:
//! s3s-fs, started by each test on a free port with its own directory. s3s-fs checks SigV4
//! signatures, presigned-URL expiry and POST-policy conditions (see the POST tests for exactly
//! which). Install it with `scripts/s3-test-server.sh --install-only`, or point
//! `PHOTO_API_TEST_S3FS` at the binary.
#![expect(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use photo_core::ObjectKey;
use photo_storage::s3::Credentials;
use photo_storage::{
    Bucket, BucketProblem, ByteStream, LocalStore, ObjectStore, S3Config, S3Credentials, S3Store,
    StoreError, UploadPolicy, UrlSigner,
};

const ACCESS_KEY: &str = "photoapitestaccesskey";
const SECRET_KEY: &str = "photoapitestsecretkey0123456789abcdef";
const RAW: &str = "photo-raw";
const PROCESSED: &str = "photo-processed";

fn s3fs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PHOTO_API_TEST_S3FS") {
        return p.into();
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "s3s-fs not found: the S3 adapter tests need a real S3 server. Run \
                 `scripts/s3-test-server.sh --install-only` (cargo install s3s-fs@0.14.1 \
                 --locked --features binary) or set PHOTO_API_TEST_S3FS to the binary"
            )
        })
}

/// A running s3s-fs, killed on drop.
struct Server {
    child: Child,
    endpoint: String,
    root: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        // s3s-fs maps each top-level directory to a bucket.
        for b in [RAW, PROCESSED] {
            std::fs::create_dir(root.path().join(b)).unwrap();
        }
        let mut child = Command::new(s3fs_binary())
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // It logs "server is running at http://127.0.0.1:PORT" once listening.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(i) = line.find("server is running at ") {
                    let addr = line[i + "server is running at ".len()..].trim().to_owned();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        });
        let endpoint = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("s3s-fs did not report its address within 20 s");
        Self {
            child,
            endpoint,
            root,
        }
    }

    fn config(&self) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            path_style: true,
            allow_http: true,
            credentials: S3Credentials::Static(Credentials {
                access_key_id: ACCESS_KEY.into(),
                secret_access_key: SECRET_KEY.into(),
                session_token: None,
            }),
            ..S3Config::new(RAW, PROCESSED, "us-east-1")
        }
    }

    async fn store(&self) -> S3Store {
        S3Store::connect(self.config()).await.unwrap()
    }
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap()
}

fn chunks(parts: Vec<Bytes>) -> ByteStream<'static> {
    Box::pin(futures_util::stream::iter(parts.into_iter().map(Ok)))
}

/// `total` bytes of a fixed pattern, in chunks of 64 KiB, produced lazily.
fn pattern_stream(total: usize) -> ByteStream<'static> {
    const CHUNK: usize = 64 * 1024;
    Box::pin(futures_util::stream::iter((0..total.div_ceil(CHUNK)).map(
        move |i| {
            let len = CHUNK.min(total - i * CHUNK);
            Ok(Bytes::from(
                (0..len)
                    .map(|j| ((i * CHUNK + j) % 251) as u8)
                    .collect::<Vec<_>>(),
            ))
        },
    )))
}

fn pattern(total: usize) -> Vec<u8> {
    (0..total).map(|j| (j % 251) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// The contract every ObjectStore keeps, run on both adapters.

async fn contract(s: &dyn ObjectStore) {
    let k = key("tenants/t1/uploads/a");
    // put_stream within the limit, then every read.
    let n = s
        .put_stream(
            Bucket::Raw,
            &k,
            chunks(vec![Bytes::from_static(b"abc"), Bytes::from_static(b"def")]),
            6,
        )
        .await
        .unwrap();
    assert_eq!(n, 6);
    assert_eq!(
        &s.get_bytes(Bucket::Raw, &k, 6).await.unwrap()[..],
        b"abcdef"
    );
    assert!(matches!(
        s.get_bytes(Bucket::Raw, &k, 5).await,
        Err(StoreError::TooLarge { limit: 5 })
    ));
    assert_eq!(&s.get_prefix(Bucket::Raw, &k, 2).await.unwrap()[..], b"ab");
    assert_eq!(
        &s.get_prefix(Bucket::Raw, &k, 100).await.unwrap()[..],
        b"abcdef"
    );
    let meta = s.head(Bucket::Raw, &k).await.unwrap().unwrap();
    assert_eq!(meta.size, 6);
    assert!((Utc::now() - meta.modified).num_seconds().abs() < 60);
    let mut r = s.open(Bucket::Raw, &k).await.unwrap();
    assert_eq!(r.meta.size, 6);
    let mut streamed = Vec::new();
    while let Some(c) = futures_util::StreamExt::next(&mut r.body).await {
        streamed.extend_from_slice(&c.unwrap());
    }
    assert_eq!(streamed, b"abcdef");
    assert!(
        s.head(Bucket::Processed, &k).await.unwrap().is_none(),
        "buckets are separate"
    );

    // An empty object.
    let empty = key("tenants/t1/uploads/empty");
    s.put_bytes(Bucket::Raw, &empty, Bytes::new())
        .await
        .unwrap();
    assert_eq!(
        s.get_prefix(Bucket::Raw, &empty, 10).await.unwrap().len(),
        0
    );
    assert_eq!(s.get_bytes(Bucket::Raw, &empty, 0).await.unwrap().len(), 0);

    // Oversize or failing bodies store nothing, not even over an existing object.
    let k2 = key("tenants/t1/uploads/b");
    assert!(matches!(
        s.put_stream(Bucket::Raw, &k2, pattern_stream(100), 99)
            .await,
        Err(StoreError::TooLarge { limit: 99 })
    ));
    assert!(s.head(Bucket::Raw, &k2).await.unwrap().is_none());
    let failing: ByteStream<'static> = Box::pin(futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(std::io::Error::other("client went away")),
    ]));
    assert!(matches!(
        s.put_stream(Bucket::Raw, &k, failing, 100).await,
        Err(StoreError::Body(_))
    ));
    assert_eq!(
        &s.get_bytes(Bucket::Raw, &k, 6).await.unwrap()[..],
        b"abcdef"
    );

    // Copy.
    let c = key("tenants/t1/files/copy-of-a");
    s.copy(Bucket::Raw, &k, &c).await.unwrap();
    assert_eq!(
        &s.get_bytes(Bucket::Raw, &c, 6).await.unwrap()[..],
        b"abcdef"
    );
    assert!(matches!(
        s.copy(Bucket::Raw, &key("tenants/t1/nope"), &c).await,
        Err(StoreError::NotFound)
    ));

    // Conditional create.
    let once = key("tenants/t1/files/once");
    s.put_if_absent(Bucket::Processed, &once, Bytes::from_static(b"first"))
        .await
        .unwrap();
    assert!(matches!(
        s.put_if_absent(Bucket::Processed, &once, Bytes::from_static(b"second"))
            .await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(
        &s.get_bytes(Bucket::Processed, &once, 100).await.unwrap()[..],
        b"first"
    );

    // Listing with a delimiter, and paging through it.
    for name in ["f/1", "f/b/2", "f/b/3", "f/c/4", "f/5", "g/6"] {
        s.put_bytes(
            Bucket::Processed,
            &key(&format!("tenants/t2/{name}")),
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
    }
    let names = |p: &photo_storage::ListPage| {
        p.objects
            .iter()
            .map(|o| o.key.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    let page = s
        .list(Bucket::Processed, "tenants/t2/f/", true, None, 100)
        .await
        .unwrap();
    assert_eq!(names(&page), ["tenants/t2/f/1", "tenants/t2/f/5"]);
    assert_eq!(page.common_prefixes, ["tenants/t2/f/b/", "tenants/t2/f/c/"]);
    assert_eq!(page.next_page, None);
    assert!(page.objects.iter().all(|o| o.meta.size == 1));
    let all = s
        .list(Bucket::Processed, "tenants/t2/", false, None, 100)
        .await
        .unwrap();
    assert_eq!(all.objects.len(), 6);
    assert!(all.common_prefixes.is_empty());
    // A prefix that is not a whole folder.
    let partial = s
        .list(Bucket::Processed, "tenants/t2/f/b", true, None, 100)
        .await
        .unwrap();
    assert_eq!(partial.common_prefixes, ["tenants/t2/f/b/"]);
    assert!(partial.objects.is_empty());
    let (mut seen_objects, mut seen_prefixes, mut token, mut pages) = (0, 0, None, 0);
    loop {
        let p = s
            .list(
                Bucket::Processed,
                "tenants/t2/f/",
                true,
                token.as_deref(),
                1,
            )
            .await
            .unwrap();
        pages += 1;
        seen_objects += p.objects.len();
        seen_prefixes += p.common_prefixes.len();
        match p.next_page {
            Some(t) => token = Some(t),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!((seen_objects, seen_prefixes), (2, 2));
    assert!(
        s.list(Bucket::Processed, "tenants/none/", true, None, 10)
            .await
            .unwrap()
            .objects
            .is_empty()
    );

    // The sweeper's listing.
    let future = Utc::now() + chrono::Duration::seconds(60);
    let mut old = s
        .list_older_than(Bucket::Raw, "tenants/t1/uploads/", future, 10)
        .await
        .unwrap();
    old.sort();
    assert_eq!(old, vec![k.clone(), empty.clone()]);
    let past = Utc::now() - chrono::Duration::hours(1);
    assert!(
        s.list_older_than(Bucket::Raw, "tenants/", past, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.list_older_than(Bucket::Raw, "tenants/", future, 1)
            .await
            .unwrap()
            .len(),
        1
    );

    // Delete, twice.
    s.delete(Bucket::Raw, &k).await.unwrap();
    s.delete(Bucket::Raw, &k).await.unwrap();
    assert!(s.head(Bucket::Raw, &k).await.unwrap().is_none());
    assert!(matches!(
        s.open(Bucket::Raw, &k).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.get_bytes(Bucket::Raw, &k, 10).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.get_prefix(Bucket::Raw, &k, 10).await,
        Err(StoreError::NotFound)
    ));
    s.health().await.unwrap();
}

#[tokio::test]
async fn contract_local() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStore::open(dir.path(), "http://h", UrlSigner::new(vec![7; 32]))
        .await
        .unwrap();
    assert_eq!(s.kind(), "local");
    contract(&s).await;
}

#[tokio::test]
async fn contract_s3() {
    let server = Server::start();
    let s = server.store().await;
    assert_eq!(s.kind(), "s3");
    contract(&s).await;
    // sweep_staging cannot list multipart uploads through object_store; it reports none.
    assert_eq!(s.sweep_staging(Utc::now()).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// S3 specifics.

/// Upload parts s3s-fs keeps in its root until completed or aborted.
fn leftover_parts(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".upload"))
        .collect()
}

#[tokio::test]
async fn large_bodies_go_up_in_parts_and_oversize_ones_are_aborted() {
    let server = Server::start();
    let s = server.store().await;
    let k = key("tenants/t1/uploads/big");
    let total = 12 * 1024 * 1024;
    let n = s
        .put_stream(Bucket::Raw, &k, pattern_stream(total), total as u64)
        .await
        .unwrap();
    assert_eq!(n, total as u64);
    let got = s.get_bytes(Bucket::Raw, &k, total as u64).await.unwrap();
    assert!(got[..] == pattern(total)[..], "content differs");
    // A multipart upload's ETag ends with "-{parts}": 12 MiB in 5 MiB parts is 3.
    let url = s.presign_get(Bucket::Raw, &k, Utc::now() + chrono::Duration::minutes(5));
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.trim_matches('"').ends_with("-3"), "etag {etag}");
    assert!(leftover_parts(server.root.path()).is_empty());

    // Over the limit after two parts were sent: aborted, nothing stored, no parts left.
    let k2 = key("tenants/t1/uploads/too-big");
    let r = s
        .put_stream(Bucket::Raw, &k2, pattern_stream(total), 11 * 1024 * 1024)
        .await;
    assert!(matches!(r, Err(StoreError::TooLarge { .. })), "{r:?}");
    assert!(s.head(Bucket::Raw, &k2).await.unwrap().is_none());
    assert_eq!(leftover_parts(server.root.path()), Vec::<String>::new());

    // A body that fails midway through a multipart upload: likewise.
    let failing: ByteStream<'static> = Box::pin(futures_util::StreamExt::chain(
        pattern_stream(7 * 1024 * 1024),
        futures_util::stream::iter(vec![Err(std::io::Error::other("client went away"))]),
    ));
    assert!(matches!(
        s.put_stream(Bucket::Raw, &k2, failing, u64::MAX).await,
        Err(StoreError::Body(_))
    ));
    assert!(s.head(Bucket::Raw, &k2).await.unwrap().is_none());
    assert!(leftover_parts(server.root.path()).is_empty());
}

#[tokio::test]
async fn presigned_get_works_is_bound_to_its_key_and_expires() {
    let server = Server::start();
    let s = server.store().await;
    let k = key("tenants/t1/jobs/j1/thumb.jpg");
    s.put_bytes(Bucket::Processed, &k, Bytes::from_static(b"jpeg bytes"))
        .await
        .unwrap();
    let url = s.presign_get(
        Bucket::Processed,
        &k,
        Utc::now() + chrono::Duration::minutes(5),
    );
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(&resp.bytes().await.unwrap()[..], b"jpeg bytes");
    // Another key with the same signature, or a changed signature: refused.
    let other = url.replace("thumb.jpg", "other.jpg");
    assert_eq!(reqwest::get(&other).await.unwrap().status(), 403);
    let sig_at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered = url.clone();
    let flipped = if &url[sig_at..=sig_at] == "0" {
        "1"
    } else {
        "0"
    };
    tampered.replace_range(sig_at..=sig_at, flipped);
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403);
    // Expiry. (Whole seconds on the wire: a URL good for 1 s could already be stale when a
    // loaded CI machine gets to use it, so 3 s, then a wait well past them.)
    let short = s.presign_get(
        Bucket::Processed,
        &k,
        Utc::now() + chrono::Duration::seconds(3),
    );
    assert_eq!(reqwest::get(&short).await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(reqwest::get(&short).await.unwrap().status(), 403);
}

#[tokio::test]
async fn health_names_the_bucket_and_the_problem() {
    let server = Server::start();
    server.store().await.health().await.unwrap();

    let mut cfg = server.config();
    cfg.bucket_processed = "missing-bucket".into();
    let err = S3Store::connect(cfg)
        .await
        .unwrap()
        .health()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Bucket { role: "processed", bucket, problem: BucketProblem::NoSuchBucket } if bucket == "missing-bucket"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "processed bucket 'missing-bucket': no such bucket"
    );

    let mut cfg = server.config();
    cfg.credentials = S3Credentials::Static(Credentials {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: "wrong-secret".into(),
        session_token: None,
    });
    let err = S3Store::connect(cfg)
        .await
        .unwrap()
        .health()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::Bucket {
                role: "raw",
                problem: BucketProblem::AccessDenied,
                ..
            }
        ),
        "{err:?}"
    );

    let mut cfg = server.config();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    cfg.endpoint = Some(format!("http://{}", closed.local_addr().unwrap()));
    drop(closed);
    let err = S3Store::connect(cfg)
        .await
        .unwrap()
        .health()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::Bucket {
                role: "raw",
                problem: BucketProblem::Unreachable(_),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn setup_creates_buckets_and_reports_what_the_server_lacks() {
    let server = Server::start();
    let mut cfg = server.config();
    cfg.bucket_raw = "fresh-raw".into();
    cfg.bucket_processed = PROCESSED.into();
    let s = S3Store::connect(cfg).await.unwrap();
    assert!(s.health().await.is_err());
    let report = s.setup().await.unwrap();
    let text = report.join("\n");
    assert!(text.contains("raw bucket 'fresh-raw': created"), "{text}");
    assert!(
        text.contains("processed bucket 'photo-processed': exists"),
        "{text}"
    );
    // s3s-fs implements none of the bucket configuration APIs.
    for step in [
        "block public access",
        "versioning",
        "lifecycle (expire after 2 days",
    ] {
        assert!(
            report
                .iter()
                .any(|l| l.contains(step) && l.contains("not supported by this server")),
            "{step}: {text}"
        );
    }
    s.health().await.unwrap();
    assert!(server.root.path().join("fresh-raw").is_dir());
    // Running it again changes nothing.
    let again = s.setup().await.unwrap().join("\n");
    assert!(again.contains("raw bucket 'fresh-raw': exists"), "{again}");
}

// ---------------------------------------------------------------------------------------------
// POST policy against the server.
//
// What s3s-fs 0.14.1 enforces on a POST upload (read in s3s 0.14.1, src/ops/signature.rs and
// src/ops/mod.rs and src/post_policy.rs): the SigV4 signature over the base64 policy; that the
// policy's x-amz-date / x-amz-credential / x-amz-algorithm equal the form fields; the credential
// date matching x-amz-date; x-amz-date within the server's clock-skew window (so on s3s-fs a
// policy also stops working that long after it was signed, whatever its expiration — AWS has no
// such limit); `expiration` (403 AccessDenied, checked before the body is read);
// `content-length-range` min and max (400 EntityTooSmall / EntityTooLarge, the body is read with
// the max as a cap); every `eq` and `starts-with` condition (key, Content-Type, bucket,
// success_action_status: 400 InvalidPolicyDocument, where AWS answers 403 AccessDenied); and
// that every form field is covered by a condition. The POST must go to the bucket URL
// (path-style `/{bucket}/`; virtual-hosted only with `--domain`).

struct Post {
    url: String,
    fields: std::collections::BTreeMap<String, String>,
}

fn policy_for<'a>(k: &'a ObjectKey, max: u64, expires_in: chrono::Duration) -> UploadPolicy<'a> {
    UploadPolicy {
        upload_id: "u1",
        key: k,
        content_type: "image/jpeg",
        max_bytes: max,
        expires_at: Utc::now() + expires_in,
    }
}

async fn post(target: &Post, body: Vec<u8>) -> (u16, String) {
    // Every field first, the file last: the S3 POST convention.
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in &target.fields {
        form = form.text(k.clone(), v.clone());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(body).file_name("photo.jpg"),
    );
    let resp = reqwest::Client::new()
        .post(&target.url)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn target(s: &S3Store, p: &UploadPolicy<'_>) -> Post {
    let t = s.presign_upload(p);
    assert_eq!(t.method, "POST");
    Post {
        url: t.url,
        fields: t.fields,
    }
}

#[tokio::test]
async fn post_policy_valid_upload_succeeds() {
    let server = Server::start();
    let s = server.store().await;
    let k = key("tenants/t1/uploads/ok");
    let t = target(&s, &policy_for(&k, 100, chrono::Duration::minutes(5)));
    assert_eq!(t.url, format!("{}/{RAW}/", server.endpoint));
    let (status, body) = post(&t, b"0123456789".to_vec()).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        &s.get_bytes(Bucket::Raw, &k, 100).await.unwrap()[..],
        b"0123456789"
    );
    // Exactly max_bytes is still allowed.
    let k2 = key("tenants/t1/uploads/ok-max");
    let t = target(&s, &policy_for(&k2, 10, chrono::Duration::minutes(5)));
    assert_eq!(post(&t, vec![7; 10]).await.0, 204);
}

/// Asserts the server refused the upload with `status` and `code`, and stored nothing.
async fn assert_refused(s: &S3Store, k: &ObjectKey, got: (u16, String), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert!(got.1.contains(&format!("<Code>{code}</Code>")), "{}", got.1);
    assert!(
        s.head(Bucket::Raw, k).await.unwrap().is_none(),
        "object stored"
    );
}

#[tokio::test]
async fn post_policy_refuses_an_oversize_body() {
    let server = Server::start();
    let s = server.store().await;
    let k = key("tenants/t1/uploads/big");
    let t = target(&s, &policy_for(&k, 10, chrono::Duration::minutes(5)));
    let got = post(&t, vec![1; 11]).await;
    assert_refused(&s, &k, got, 400, "EntityTooLarge").await;
}

#[tokio::test]
async fn post_policy_refuses_an_empty_body() {
    let server = Server::start();
    let s = server.store().await;
    let k = key("tenants/t1/uploads/empty");
    let t = target(&s, &policy_for(&k, 10, chrono::Duration::minutes(5)));
    let got = post(&t, Vec::new()).await;
    assert_refused(&s, &k, got, 400, "EntityTooSmall").await;
}

#[tokio::test]
async fn post_policy_refuses_another_content_type() {
    let server = Server::start();
    let s = server.store().await;
    let k = key("tenants/t1/uploads/ct");
    let mut t = target(&s, &policy_for(&k, 100, chrono::Duration::minutes(5)));
    t.fields.insert("Content-Type".into(), "text/html".into());
    let got = post(&t, b"<script>".to_vec()).await;
    // AWS answers 403 AccessDenied here; s3s-fs 400 InvalidPolicyDocument.
    assert_refused(&s, &k, got, 400, "InvalidPolicyDocument").await;
}

#[tokio::test]
async fn post_policy_refuses_another_key() {
    let server = Server::start();
    let s = server.store().await;
    let k = key("tenants/t1/uploads/mine");
    let other = key("tenants/t2/uploads/theirs");
    let mut t = target(&s, &policy_for(&k, 100, chrono::Duration::minutes(5)));
    t.fields.insert("key".into(), other.as_str().into());
    let got = post(&t, b"data".to_vec()).await;
    assert_refused(&s, &other, got, 400, "InvalidPolicyDocument").await;
    assert!(s.head(Bucket::Raw, &k).await.unwrap().is_none());
}

#[tokio::test]
async fn post_policy_refuses_an_expired_policy() {
    let server = Server::start();
    let s = server.store().await;
    let k = key("tenants/t1/uploads/late");
    let t = target(&s, &policy_for(&k, 100, chrono::Duration::seconds(-1)));
    let got = post(&t, b"data".to_vec()).await;
    assert_refused(&s, &k, got, 403, "AccessDenied").await;
}

#[tokio::test]
async fn post_policy_refuses_a_tampered_signature_or_policy() {
    let server = Server::start();
    let s = server.store().await;
    let k = key("tenants/t1/uploads/tampered");
    let good = target(&s, &policy_for(&k, 100, chrono::Duration::minutes(5)));

    let mut t = Post {
        url: good.url.clone(),
        fields: good.fields.clone(),
    };
    let sig = t.fields["x-amz-signature"].clone();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    t.fields
        .insert("x-amz-signature".into(), format!("{flipped}{}", &sig[1..]));
    let got = post(&t, b"data".to_vec()).await;
    assert_refused(&s, &k, got, 403, "SignatureDoesNotMatch").await;

    // A policy re-signed with another secret (a client raising its own size limit).
    let forged = photo_storage::s3::post_policy::sign(
        &photo_storage::s3::post_policy::PostPolicyInput {
            bucket: RAW,
            key: k.as_str(),
            content_type: "image/jpeg",
            max_bytes: 1 << 30,
            expires_at: Utc::now() + chrono::Duration::minutes(5),
            success_status: 204,
        },
        &Credentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: "not-the-secret".into(),
            session_token: None,
        },
        "us-east-1",
        Utc::now(),
    );
    let t = Post {
        url: good.url.clone(),
        fields: forged.fields,
    };
    let got = post(&t, b"data".to_vec()).await;
    assert_refused(&s, &k, got, 403, "SignatureDoesNotMatch").await;
}
