//! The S3 adapter, for AWS S3 and S3-compatible servers (MinIO, Ceph, s3s-fs, …), on the
//! `object_store` crate, plus what object_store lacks: SigV4 POST policies
//! ([`post_policy`]), synchronous presigned GETs, a profile-file credential reader
//! ([`credentials`]) and bucket administration ([`S3Store::setup`]).
//!
//! Credentials: the keys in [`S3Config::credentials`], else the environment, else the shared
//! profile files, else a role (web identity, ECS/EKS task, EC2 instance) through object_store's
//! providers. The presign methods of [`ObjectStore`] are synchronous, so the store keeps the
//! current credentials at hand and, for role credentials, refreshes them in the background.

pub mod credentials;
pub mod post_policy;
mod setup;
pub mod sigv4;

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsCredentialProvider};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore as _, ObjectStoreExt as _, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, WriteMultipart,
};
use photo_core::ObjectKey;

pub use credentials::CredentialSource;
pub use sigv4::Credentials;

use crate::{
    Bucket, BucketProblem, ByteStream, ListPage, ListedObject, ObjectMeta, ObjectReader,
    ObjectStore, StoreError, UploadPolicy, UploadTarget,
};

/// S3's smallest part (all but the last); also the size below which a body is sent in one PUT.
pub const DEFAULT_PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts uploaded at once by one `put_stream`. Memory per upload stays under
/// `part_size * (PART_CONCURRENCY + 1)`.
const PART_CONCURRENCY: usize = 2;
/// The status a successful POST upload answers with (empty body).
pub const POST_SUCCESS_STATUS: u16 = 204;
/// Longest lifetime SigV4 allows for a presigned URL.
const MAX_PRESIGN_SECS: i64 = 7 * 24 * 3600;
/// How long the first credential fetch may take at start-up (a role lookup on a machine
/// without one would otherwise retry for minutes).
const FIRST_CREDENTIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// How often role credentials are re-read from the provider (which caches them until shortly
/// before they expire).
const CREDENTIAL_REFRESH: Duration = Duration::from_secs(60);

/// Where the credentials come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum S3Credentials {
    /// The standard chain: environment, profile files, then a role.
    #[default]
    Chain,
    /// These keys.
    Static(Credentials),
}

/// How to reach the two buckets. `Debug` redacts secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket of raw uploads (`S3_BUCKET_RAW`).
    pub bucket_raw: String,
    /// Bucket of processed results (`S3_BUCKET_PROCESSED`).
    pub bucket_processed: String,
    /// Region (`AWS_REGION`); S3-compatible servers usually take any, often `us-east-1`.
    pub region: String,
    /// Endpoint of a non-AWS server, e.g. `http://127.0.0.1:9000`; `None` for AWS.
    pub endpoint: Option<String>,
    /// `{endpoint}/{bucket}/{key}` instead of `{bucket}.{host}/{key}`; most self-hosted
    /// servers need it.
    pub path_style: bool,
    /// Allow plain `http://` endpoints (test servers).
    pub allow_http: bool,
    /// Where the credentials come from.
    pub credentials: S3Credentials,
}

impl S3Config {
    /// Buckets and region, with the credential chain, AWS endpoints and virtual-hosted style.
    pub fn new(
        bucket_raw: impl Into<String>,
        bucket_processed: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            bucket_raw: bucket_raw.into(),
            bucket_processed: bucket_processed.into(),
            region: region.into(),
            endpoint: None,
            path_style: false,
            allow_http: false,
            credentials: S3Credentials::Chain,
        }
    }

    fn bucket_name(&self, bucket: Bucket) -> &str {
        match bucket {
            Bucket::Raw => &self.bucket_raw,
            Bucket::Processed => &self.bucket_processed,
        }
    }
}

/// Scheme + authority, authority alone, and the path before the key, of a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BucketUrl {
    /// `https://bucket.s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`.
    origin: String,
    /// The `Host` header: `bucket.s3.eu-west-1.amazonaws.com` or `127.0.0.1:9000`.
    host: String,
    /// `""` (virtual-hosted) or `/bucket` (path-style), never ending with `/`.
    prefix: String,
}

impl BucketUrl {
    fn new(cfg: &S3Config, bucket: &str) -> Self {
        let (scheme, authority, base_path) = match &cfg.endpoint {
            Some(ep) => {
                let (scheme, rest) = ep.split_once("://").unwrap_or(("https", ep.as_str()));
                let (authority, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
                    None => (rest, ""),
                };
                (scheme.to_owned(), authority.to_owned(), path.to_owned())
            }
            None => (
                "https".to_owned(),
                format!("s3.{}.amazonaws.com", cfg.region),
                String::new(),
            ),
        };
        if cfg.path_style {
            Self {
                origin: format!("{scheme}://{authority}"),
                host: authority,
                prefix: format!("{base_path}/{bucket}"),
            }
        } else {
            let host = format!("{bucket}.{authority}");
            Self {
                origin: format!("{scheme}://{host}"),
                host,
                prefix: base_path,
            }
        }
    }

    /// The URL of the bucket itself (the POST target), ending with `/`.
    fn bucket_url(&self) -> String {
        format!("{}{}/", self.origin, self.prefix)
    }
}

/// Objects in two S3 buckets.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: S3Config,
    raw: AmazonS3,
    processed: AmazonS3,
    provider: AwsCredentialProvider,
    is_static: bool,
    current: RwLock<Arc<Credentials>>,
    http: reqwest::Client,
    part_size: usize,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config's credentials redact themselves; the cache is left out entirely.
        f.debug_struct("S3Store")
            .field("config", &self.inner.cfg)
            .field("part_size", &self.inner.part_size)
            .finish_non_exhaustive()
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(std::io::Error::other(e))
}

fn map_os(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            StoreError::AlreadyExists
        }
        other => backend(other),
    }
}

fn path_of(key: &ObjectKey) -> Result<Path, StoreError> {
    // ObjectKey's rules (no empty, `.`, `..` or control-character segments) are stricter than
    // Path's, so this only fails on a bug.
    Path::parse(key.as_str()).map_err(backend)
}

fn meta_of(m: &object_store::ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        size: m.size,
        modified: m.last_modified,
    }
}

fn from_aws(c: &object_store::aws::AwsCredential) -> Credentials {
    Credentials {
        access_key_id: c.key_id.clone(),
        secret_access_key: c.secret_key.clone(),
        session_token: c.token.clone(),
    }
}

/// Environment variables of the role providers, handed to object_store's builder (its `new()`
/// reads no environment; `from_env()` would also take keys and endpoints we resolve ourselves).
const ROLE_ENV: [&str; 8] = [
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_METADATA_ENDPOINT",
];

impl S3Store {
    /// Builds the store and fetches the credentials once (failing with a message that says
    /// what to set when there are none). Does not contact the buckets: see
    /// [`ObjectStore::health`] and [`S3Store::setup`].
    pub async fn connect(cfg: S3Config) -> Result<Self, StoreError> {
        Self::connect_with_env(cfg, &credentials::ProcessEnv).await
    }

    /// [`S3Store::connect`] with an explicit environment (tests).
    pub async fn connect_with_env(
        cfg: S3Config,
        env: &dyn credentials::Env,
    ) -> Result<Self, StoreError> {
        let static_creds = match &cfg.credentials {
            S3Credentials::Static(c) => Some(c.clone()),
            S3Credentials::Chain => credentials::resolve_static(env)
                .map_err(|e| backend(std::io::Error::other(e.to_string())))?
                .map(|(c, source)| {
                    tracing::info!(?source, access_key_id = %c.access_key_id, "S3 credentials");
                    c
                }),
        };
        let is_static = static_creds.is_some();
        let builder = |bucket: &str| {
            let url = BucketUrl::new(&cfg, bucket);
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(&cfg.region)
                .with_allow_http(cfg.allow_http)
                .with_virtual_hosted_style_request(!cfg.path_style);
            if cfg.endpoint.is_some() {
                // object_store wants the bucket in a virtual-hosted endpoint, not in a
                // path-style one.
                b = b.with_endpoint(if cfg.path_style {
                    url.origin.clone()
                } else {
                    format!("{}{}", url.origin, url.prefix)
                });
            }
            b
        };
        let mut raw_builder = builder(&cfg.bucket_raw);
        match &static_creds {
            Some(c) => {
                raw_builder = raw_builder
                    .with_access_key_id(&c.access_key_id)
                    .with_secret_access_key(&c.secret_access_key);
                if let Some(t) = &c.session_token {
                    raw_builder = raw_builder.with_token(t);
                }
            }
            None => {
                for var in ROLE_ENV {
                    if let (Some(v), Ok(key)) = (
                        env.var(var),
                        var.to_ascii_lowercase().parse::<AmazonS3ConfigKey>(),
                    ) {
                        raw_builder = raw_builder.with_config(key, v);
                    }
                }
            }
        }
        let raw = raw_builder.build().map_err(map_os)?;
        // One provider for both buckets, so a role's credentials are fetched once.
        let provider = Arc::clone(raw.credentials());
        let processed = builder(&cfg.bucket_processed)
            .with_credentials(Arc::clone(&provider))
            .build()
            .map_err(map_os)?;
        let first = tokio::time::timeout(FIRST_CREDENTIAL_TIMEOUT, provider.get_credential())
            .await
            .map_err(|_| {
                backend(std::io::Error::other(
                    "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                     AWS_PROFILE (with ~/.aws/credentials), or run with an instance or task role \
                     (timed out asking the role provider)",
                ))
            })?
            .map_err(|e| {
                backend(std::io::Error::other(format!(
                    "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                     AWS_PROFILE, or run with an instance or task role ({e})"
                )))
            })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(backend)?;
        let inner = Arc::new(Inner {
            current: RwLock::new(Arc::new(from_aws(&first))),
            cfg,
            raw,
            processed,
            provider,
            is_static,
            http,
            part_size: DEFAULT_PART_SIZE,
        });
        if !inner.is_static {
            tokio::spawn(refresh_loop(Arc::downgrade(&inner)));
        }
        Ok(Self { inner })
    }

    /// Changes the multipart part size (at least 5 MiB on AWS; smaller only for test servers).
    pub fn with_part_size(mut self, part_size: usize) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.part_size = part_size.max(1);
        }
        self
    }

    /// The configuration.
    pub fn config(&self) -> &S3Config {
        &self.inner.cfg
    }

    fn store(&self, bucket: Bucket) -> &AmazonS3 {
        match bucket {
            Bucket::Raw => &self.inner.raw,
            Bucket::Processed => &self.inner.processed,
        }
    }

    /// The credentials last fetched (never blocks).
    fn cached_credentials(&self) -> Arc<Credentials> {
        match self.inner.current.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Current credentials from the provider (which caches and refreshes role credentials).
    async fn fresh_credentials(&self) -> Result<Arc<Credentials>, StoreError> {
        self.inner.fresh_credentials().await
    }

    fn bucket_url(&self, bucket: Bucket) -> BucketUrl {
        BucketUrl::new(&self.inner.cfg, self.inner.cfg.bucket_name(bucket))
    }

    /// A presigned URL for `method` on `key` (for tests and the file API's presigned PUT).
    pub fn presign(
        &self,
        method: &str,
        bucket: Bucket,
        key: &ObjectKey,
        expires_at: DateTime<Utc>,
    ) -> String {
        self.presign_with(method, bucket, key, expires_at, &[])
    }

    /// [`S3Store::presign`] with extra signed query parameters.
    pub fn presign_with(
        &self,
        method: &str,
        bucket: Bucket,
        key: &ObjectKey,
        expires_at: DateTime<Utc>,
        extra: &[(&str, &str)],
    ) -> String {
        let now = Utc::now();
        let secs = (expires_at - now).num_seconds().clamp(1, MAX_PRESIGN_SECS);
        let url = self.bucket_url(bucket);
        sigv4::presign_url_with(
            &self.cached_credentials(),
            &self.inner.cfg.region,
            method,
            sigv4::UrlTarget {
                origin: &url.origin,
                host: &url.host,
                path: &format!("{}/{}", url.prefix, key.as_str()),
            },
            secs.unsigned_abs(),
            now,
            extra,
        )
    }

    async fn head_bucket(&self, bucket: Bucket) -> Result<(), StoreError> {
        let role = bucket.as_str();
        let name = self.inner.cfg.bucket_name(bucket).to_owned();
        let fail = |problem| StoreError::Bucket {
            role,
            bucket: name.clone(),
            problem,
        };
        let resp = self
            .admin_request(bucket, reqwest::Method::HEAD, &[], None)
            .await
            .map_err(|e| fail(BucketProblem::Unreachable(e.to_string())))?;
        match resp.status {
            s if s.is_success() => Ok(()),
            reqwest::StatusCode::NOT_FOUND => Err(fail(BucketProblem::NoSuchBucket)),
            reqwest::StatusCode::FORBIDDEN => Err(fail(BucketProblem::AccessDenied)),
            s => Err(fail(BucketProblem::Other(format!("HTTP {s}")))),
        }
    }

    /// Sends one request signed with our own SigV4 code to the bucket itself (not an object):
    /// `HEAD` (exists?), `PUT` (create) or `PUT ?versioning` and friends.
    async fn admin_request(
        &self,
        bucket: Bucket,
        method: reqwest::Method,
        query: &[(&str, &str)],
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<AdminResponse, AdminError> {
        let creds = self
            .fresh_credentials()
            .await
            .map_err(|e| AdminError(e.to_string()))?;
        let url = self.bucket_url(bucket);
        let path = if url.prefix.is_empty() {
            "/".to_owned()
        } else {
            url.prefix.clone()
        };
        let (payload, content_type) = body.unwrap_or((Vec::new(), ""));
        let sha = sigv4::sha256_hex(&payload);
        let md5 = {
            use base64::Engine;
            use md5::Digest;
            base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&payload))
        };
        let mut headers: Vec<(&str, &str)> = vec![("host", &url.host)];
        if !payload.is_empty() {
            headers.push(("content-md5", &md5));
            headers.push(("content-type", content_type));
        }
        let signed = sigv4::sign_headers(
            &creds,
            &self.inner.cfg.region,
            &sigv4::Request {
                method: method.as_str(),
                path: &path,
                query,
                headers: &headers,
                payload_sha256: &sha,
            },
            Utc::now(),
        );
        let mut full = format!("{}{}", url.origin, sigv4::uri_encode(&path, true));
        if !signed.canonical_query.is_empty() {
            full.push('?');
            full.push_str(&signed.canonical_query);
        }
        let mut req = self.inner.http.request(method, full);
        for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
            req = req.header(*k, *v);
        }
        for (k, v) in &signed.add {
            req = req.header(k, v);
        }
        let resp = req
            .body(payload)
            .send()
            .await
            .map_err(|e| AdminError(error_chain(&e)))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Ok(AdminResponse { status, body: text })
    }
}

/// The answer to an admin request.
#[derive(Debug)]
struct AdminResponse {
    status: reqwest::StatusCode,
    body: String,
}

impl AdminResponse {
    /// The `<Code>` of an S3 error body.
    fn code(&self) -> Option<&str> {
        let start = self.body.find("<Code>")? + "<Code>".len();
        let end = self.body[start..].find("</Code>")? + start;
        Some(&self.body[start..end])
    }
}

/// A request that got no answer.
#[derive(Debug)]
struct AdminError(String);

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

impl Inner {
    async fn fresh_credentials(&self) -> Result<Arc<Credentials>, StoreError> {
        let c = self.provider.get_credential().await.map_err(map_os)?;
        let c = Arc::new(from_aws(&c));
        let changed = *self.cached() != *c;
        if changed {
            match self.current.write() {
                Ok(mut w) => *w = Arc::clone(&c),
                Err(poisoned) => *poisoned.into_inner() = Arc::clone(&c),
            }
        }
        Ok(c)
    }

    fn cached(&self) -> Arc<Credentials> {
        match self.current.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

async fn refresh_loop(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(CREDENTIAL_REFRESH).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Err(e) = inner.fresh_credentials().await {
            // Keep the previous credentials; presigned URLs keep working until they expire.
            tracing::warn!(error = %e, "refreshing S3 role credentials failed");
        }
    }
}

/// Reads up to `limit` bytes of a body; `TooLarge` past it.
async fn collect_capped(
    mut stream: futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>,
    expected: u64,
    limit: u64,
) -> Result<Bytes, StoreError> {
    let mut buf = BytesMut::with_capacity(expected.min(limit).min(64 << 20) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(map_os)?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(StoreError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The stored `Content-Type` of an object, from its key's extension, so that presigned
/// downloads are served with the right type (outputs are `….jpg`, `….png`, …).
fn attributes_for(key: &ObjectKey) -> object_store::Attributes {
    let mut attrs = object_store::Attributes::new();
    let ext = key
        .as_str()
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase());
    let mime = match ext.as_deref() {
        Some("jpg" | "jpeg") => Some("image/jpeg"),
        Some("png") => Some("image/png"),
        Some("webp") => Some("image/webp"),
        Some("gif") => Some("image/gif"),
        Some("avif") => Some("image/avif"),
        Some("json") => Some("application/json"),
        _ => None,
    };
    if let Some(m) = mime {
        attrs.insert(object_store::Attribute::ContentType, m.into());
    }
    attrs
}

fn put_options(key: &ObjectKey) -> PutOptions {
    PutOptions {
        attributes: attributes_for(key),
        ..PutOptions::default()
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn put_stream(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        mut body: ByteStream<'_>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        let path = path_of(key)?;
        let store = self.store(bucket);
        let part = self.inner.part_size;
        let mut size: u64 = 0;
        // Buffer the first part: a small body goes up in one PUT, no multipart at all.
        let mut first = BytesMut::new();
        let mut ended = true;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StoreError::Body)?;
            size = size.saturating_add(chunk.len() as u64);
            if size > limit {
                return Err(StoreError::TooLarge { limit });
            }
            first.extend_from_slice(&chunk);
            if first.len() >= part {
                ended = false;
                break;
            }
        }
        if ended {
            store
                .put_opts(
                    &path,
                    PutPayload::from_bytes(first.freeze()),
                    put_options(key),
                )
                .await
                .map_err(map_os)?;
            return Ok(size);
        }
        let upload = store
            .put_multipart_opts(
                &path,
                PutMultipartOptions {
                    attributes: attributes_for(key),
                    ..PutMultipartOptions::default()
                },
            )
            .await
            .map_err(map_os)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part);
        writer.put(first.freeze());
        let streamed: Result<(), StoreError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(StoreError::Body)?;
                size = size.saturating_add(chunk.len() as u64);
                if size > limit {
                    return Err(StoreError::TooLarge { limit });
                }
                // Back-pressure: at most PART_CONCURRENCY parts in flight plus one buffering.
                writer
                    .wait_for_capacity(PART_CONCURRENCY)
                    .await
                    .map_err(map_os)?;
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        match streamed {
            Ok(()) => {
                // S3 shows the object only once CompleteMultipartUpload succeeds. If that
                // fails, the incomplete upload is left to the bucket's lifecycle rule.
                writer.finish().await.map_err(map_os)?;
                Ok(size)
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "aborting a multipart upload failed; the bucket lifecycle rule removes it");
                }
                Err(e)
            }
        }
    }

    async fn put_bytes(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        bytes: Bytes,
    ) -> Result<(), StoreError> {
        self.store(bucket)
            .put_opts(
                &path_of(key)?,
                PutPayload::from_bytes(bytes),
                put_options(key),
            )
            .await
            .map_err(map_os)?;
        Ok(())
    }

    async fn get_bytes(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        limit: u64,
    ) -> Result<Bytes, StoreError> {
        let got = self
            .store(bucket)
            .get(&path_of(key)?)
            .await
            .map_err(map_os)?;
        // The size is known from the response headers before any of the body is read.
        if got.meta.size > limit {
            return Err(StoreError::TooLarge { limit });
        }
        let expected = got.meta.size;
        collect_capped(got.into_stream(), expected, limit).await
    }

    async fn get_prefix(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        n: usize,
    ) -> Result<Bytes, StoreError> {
        let path = path_of(key)?;
        let store = self.store(bucket);
        // A range on an empty object is unsatisfiable (416), so look at the size first.
        let meta = store.head(&path).await.map_err(map_os)?;
        let end = (n as u64).min(meta.size);
        if end == 0 {
            return Ok(Bytes::new());
        }
        let got = store
            .get_opts(
                &path,
                GetOptions {
                    range: Some(GetRange::Bounded(0..end)),
                    ..GetOptions::default()
                },
            )
            .await
            .map_err(map_os)?;
        collect_capped(got.into_stream(), end, end).await
    }

    async fn open(&self, bucket: Bucket, key: &ObjectKey) -> Result<ObjectReader, StoreError> {
        let got = self
            .store(bucket)
            .get(&path_of(key)?)
            .await
            .map_err(map_os)?;
        let meta = meta_of(&got.meta);
        let body = got.into_stream().map(|r| r.map_err(std::io::Error::other));
        Ok(ObjectReader {
            meta,
            body: Box::pin(body),
        })
    }

    async fn open_range(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        range: std::ops::Range<u64>,
    ) -> Result<ObjectReader, StoreError> {
        if range.is_empty() {
            // S3 cannot express an empty range; answer with an empty body.
            let meta = self.head(bucket, key).await?.ok_or(StoreError::NotFound)?;
            return Ok(ObjectReader {
                meta,
                body: Box::pin(futures_util::stream::empty()),
            });
        }
        let got = self
            .store(bucket)
            .get_opts(
                &path_of(key)?,
                GetOptions {
                    range: Some(GetRange::Bounded(range)),
                    ..GetOptions::default()
                },
            )
            .await
            .map_err(map_os)?;
        let meta = meta_of(&got.meta);
        let body = got.into_stream().map(|r| r.map_err(std::io::Error::other));
        Ok(ObjectReader {
            meta,
            body: Box::pin(body),
        })
    }

    async fn head(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        match self.store(bucket).head(&path_of(key)?).await {
            Ok(m) => Ok(Some(meta_of(&m))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_os(e)),
        }
    }

    async fn delete(&self, bucket: Bucket, key: &ObjectKey) -> Result<(), StoreError> {
        match self.store(bucket).delete(&path_of(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_os(e)),
        }
    }

    async fn list_older_than(
        &self,
        bucket: Bucket,
        prefix: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, StoreError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let got = self
                .list(bucket, prefix, false, page.as_deref(), 1000)
                .await?;
            for o in got.objects {
                if o.meta.modified < before {
                    out.push(o.key);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            match got.next_page {
                Some(p) => page = Some(p),
                None => return Ok(out),
            }
        }
    }

    /// Always 0: aborting stale multipart uploads needs ListMultipartUploads, which object_store
    /// does not offer. The bucket lifecycle rule that [`S3Store::setup`] installs
    /// (AbortIncompleteMultipartUpload after 7 days) removes them instead; `put_stream` aborts
    /// its own uploads when it fails.
    async fn sweep_staging(&self, _before: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(0)
    }

    fn presign_get(&self, bucket: Bucket, key: &ObjectKey, expires_at: DateTime<Utc>) -> String {
        self.presign("GET", bucket, key, expires_at)
    }

    fn presign_get_disposition(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        expires_at: DateTime<Utc>,
        disposition: &str,
    ) -> String {
        self.presign_with(
            "GET",
            bucket,
            key,
            expires_at,
            &[("response-content-disposition", disposition)],
        )
    }

    fn presign_upload(&self, p: &UploadPolicy<'_>) -> UploadTarget {
        let creds = self.cached_credentials();
        let url = self.bucket_url(Bucket::Raw);
        let signed = post_policy::sign(
            &post_policy::PostPolicyInput {
                bucket: &self.inner.cfg.bucket_raw,
                key: p.key.as_str(),
                content_type: p.content_type,
                max_bytes: p.max_bytes,
                expires_at: p.expires_at,
                success_status: POST_SUCCESS_STATUS,
            },
            &creds,
            &self.inner.cfg.region,
            Utc::now(),
        );
        UploadTarget {
            method: "POST",
            url: url.bucket_url(),
            fields: signed.fields,
            headers: Default::default(),
        }
    }

    async fn copy(
        &self,
        bucket: Bucket,
        from: &ObjectKey,
        to: &ObjectKey,
    ) -> Result<(), StoreError> {
        self.store(bucket)
            .copy(&path_of(from)?, &path_of(to)?)
            .await
            .map_err(map_os)
    }

    async fn list(
        &self,
        bucket: Bucket,
        prefix: &str,
        delimiter: bool,
        page: Option<&str>,
        max: usize,
    ) -> Result<ListPage, StoreError> {
        let got = self
            .store(bucket)
            .list_paginated(
                (!prefix.is_empty()).then_some(prefix),
                PaginatedListOptions {
                    delimiter: delimiter.then_some("/".into()),
                    max_keys: Some(max.clamp(1, 1000)),
                    page_token: page.map(str::to_owned),
                    ..PaginatedListOptions::default()
                },
            )
            .await
            .map_err(map_os)?;
        let mut objects = Vec::with_capacity(got.result.objects.len());
        for m in &got.result.objects {
            match ObjectKey::parse(m.location.as_ref()) {
                Ok(key) => objects.push(ListedObject {
                    key,
                    meta: meta_of(m),
                }),
                // Written by something else, with a key we never build: not ours to show.
                Err(_) => tracing::debug!(key = %m.location, "skipping a foreign key"),
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        let mut common_prefixes: Vec<String> = got
            .result
            .common_prefixes
            .iter()
            .map(|p| format!("{}/", p.as_ref().trim_end_matches('/')))
            .collect();
        common_prefixes.sort();
        Ok(ListPage {
            objects,
            common_prefixes,
            next_page: got.page_token,
        })
    }

    async fn put_if_absent(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        bytes: Bytes,
    ) -> Result<(), StoreError> {
        self.store(bucket)
            .put_opts(
                &path_of(key)?,
                PutPayload::from_bytes(bytes),
                PutOptions {
                    mode: PutMode::Create,
                    ..put_options(key)
                },
            )
            .await
            .map_err(map_os)?;
        Ok(())
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.head_bucket(Bucket::Raw).await?;
        self.head_bucket(Bucket::Processed).await
    }

    fn kind(&self) -> &'static str {
        "s3"
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used)]
    use super::*;

    fn cfg(endpoint: Option<&str>, path_style: bool) -> S3Config {
        S3Config {
            endpoint: endpoint.map(str::to_owned),
            path_style,
            ..S3Config::new("raw-b", "proc-b", "eu-west-1")
        }
    }

    #[test]
    fn bucket_urls() {
        let aws = BucketUrl::new(&cfg(None, false), "raw-b");
        assert_eq!(
            aws.bucket_url(),
            "https://raw-b.s3.eu-west-1.amazonaws.com/"
        );
        assert_eq!(aws.host, "raw-b.s3.eu-west-1.amazonaws.com");
        let path = BucketUrl::new(&cfg(Some("http://127.0.0.1:9000/"), true), "raw-b");
        assert_eq!(path.bucket_url(), "http://127.0.0.1:9000/raw-b/");
        assert_eq!(path.host, "127.0.0.1:9000");
        assert_eq!(path.prefix, "/raw-b");
        let vh = BucketUrl::new(&cfg(Some("https://minio.example"), false), "raw-b");
        assert_eq!(vh.bucket_url(), "https://raw-b.minio.example/");
        let sub = BucketUrl::new(&cfg(Some("http://h:1/s3/"), true), "raw-b");
        assert_eq!(sub.bucket_url(), "http://h:1/s3/raw-b/");
    }

    #[test]
    fn config_debug_redacts_the_secret() {
        let mut c = cfg(None, false);
        c.credentials = S3Credentials::Static(Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "SUPERSECRET".into(),
            session_token: Some("TOKENSECRET".into()),
        });
        let d = format!("{c:?}");
        assert!(d.contains("AKID"));
        assert!(
            !d.contains("SUPERSECRET") && !d.contains("TOKENSECRET"),
            "{d}"
        );
    }

    #[tokio::test]
    async fn store_debug_redacts_and_presigns_with_static_keys() {
        let mut c = cfg(Some("http://127.0.0.1:1"), true);
        c.allow_http = true;
        c.credentials = S3Credentials::Static(Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "SUPERSECRET".into(),
            session_token: None,
        });
        let s = S3Store::connect(c).await.unwrap();
        assert!(!format!("{s:?}").contains("SUPERSECRET"));
        assert_eq!(s.kind(), "s3");
        let key = ObjectKey::parse("tenants/t/jobs/j/a b.jpg").unwrap();
        let url = s.presign_get(
            Bucket::Processed,
            &key,
            Utc::now() + chrono::Duration::hours(1),
        );
        assert!(
            url.starts_with("http://127.0.0.1:1/proc-b/tenants/t/jobs/j/a%20b.jpg?"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=3600") || url.contains("X-Amz-Expires=3599"));
        assert!(!url.contains("SUPERSECRET"));
    }
}
