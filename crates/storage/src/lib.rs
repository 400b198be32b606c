//! Object storage: the [`ObjectStore`] trait every adapter implements, the local-directory
//! adapter of the embedded default with HMAC URL signing, and the S3 adapter with SigV4
//! presigned URLs and POST policies.

pub mod local;
pub mod metered;
pub mod s3;
mod signer;

use std::collections::BTreeMap;
use std::pin::Pin;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use photo_core::ObjectKey;
pub use photo_core::key::Bucket;

pub use local::LocalStore;
pub use metered::Metered;
pub use s3::{S3Config, S3Credentials, S3Store};
pub use signer::UrlSigner;

/// A stream of body chunks.
pub type ByteStream<'a> = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + 'a>>;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object under that key.
    #[error("object not found")]
    NotFound,
    /// The body was larger than the allowed limit; nothing was stored.
    #[error("body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The body stream failed (client went away, …); nothing was stored.
    #[error("reading the body failed: {0}")]
    Body(std::io::Error),
    /// A conditional create found the key taken; nothing was written.
    #[error("object already exists")]
    AlreadyExists,
    /// A bucket cannot be used (health check, start-up).
    #[error("{role} bucket '{bucket}': {problem}")]
    Bucket {
        /// `raw` or `processed`.
        role: &'static str,
        /// The bucket's name.
        bucket: String,
        /// What is wrong.
        problem: BucketProblem,
    },
    /// The backend failed.
    #[error("storage backend error: {0}")]
    Backend(#[from] std::io::Error),
}

/// What is wrong with a bucket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketProblem {
    /// The bucket does not exist (create it, or run the storage setup).
    #[error("no such bucket")]
    NoSuchBucket,
    /// The credentials may not use it.
    #[error("access denied (check the credentials and the bucket policy)")]
    AccessDenied,
    /// The server could not be reached.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// Any other answer.
    #[error("unexpected answer: {0}")]
    Other(String),
}

/// Size and time of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
    /// Last modification.
    pub modified: DateTime<Utc>,
}

/// One object of a [`ListPage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Its key.
    pub key: ObjectKey,
    /// Size and time.
    pub meta: ObjectMeta,
}

/// One page of [`ObjectStore::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects directly matched, in key order.
    pub objects: Vec<ListedObject>,
    /// With a delimiter: the "folders" under the prefix, each ending with `/`, in order.
    pub common_prefixes: Vec<String>,
    /// Pass back as `page` for the next page; `None` on the last page.
    pub next_page: Option<String>,
}

/// An open object: its metadata and its bytes as a stream.
pub struct ObjectReader {
    /// Size and time.
    pub meta: ObjectMeta,
    /// The bytes.
    pub body: ByteStream<'static>,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("meta", &self.meta)
            .finish()
    }
}

/// How a client uploads directly to storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTarget {
    /// `POST` (multipart form: every field, then the `file` part) or `PUT`.
    pub method: &'static str,
    /// Where to send it.
    pub url: String,
    /// Form fields to send before the file.
    pub fields: BTreeMap<String, String>,
    /// Headers to send.
    pub headers: BTreeMap<String, String>,
}

/// What a direct upload must respect; signed into the upload URL or policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPolicy<'a> {
    /// The upload's id (part of the local URL).
    pub upload_id: &'a str,
    /// Exact destination key.
    pub key: &'a ObjectKey,
    /// Exact content type.
    pub content_type: &'a str,
    /// Largest body accepted.
    pub max_bytes: u64,
    /// When the URL stops working.
    pub expires_at: DateTime<Utc>,
}

/// An object store. Writes are atomic: an object is either absent or complete, never partial.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Streams `body` into `key`, refusing (and storing nothing) once more than `limit` bytes
    /// arrive. Returns the stored size.
    async fn put_stream(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        body: ByteStream<'_>,
        limit: u64,
    ) -> Result<u64, StoreError>;

    /// Stores a small object held in memory.
    async fn put_bytes(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        bytes: Bytes,
    ) -> Result<(), StoreError>;

    /// Reads a whole object, refusing objects over `limit` bytes.
    async fn get_bytes(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        limit: u64,
    ) -> Result<Bytes, StoreError>;

    /// Reads at most the first `n` bytes (for sniffing and header probes).
    async fn get_prefix(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        n: usize,
    ) -> Result<Bytes, StoreError>;

    /// Opens an object for streaming.
    async fn open(&self, bucket: Bucket, key: &ObjectKey) -> Result<ObjectReader, StoreError>;

    /// Opens bytes `range` of an object (the caller checked it lies within the object's size);
    /// `meta` describes the whole object.
    async fn open_range(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        range: std::ops::Range<u64>,
    ) -> Result<ObjectReader, StoreError>;

    /// Size and time, or `None` when absent.
    async fn head(&self, bucket: Bucket, key: &ObjectKey)
    -> Result<Option<ObjectMeta>, StoreError>;

    /// Deletes an object; deleting an absent object is not an error.
    async fn delete(&self, bucket: Bucket, key: &ObjectKey) -> Result<(), StoreError>;

    /// Keys under `prefix` last modified before `before` (for the sweeper), at most `limit`.
    async fn list_older_than(
        &self,
        bucket: Bucket,
        prefix: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, StoreError>;

    /// Removes staging leftovers of interrupted writes older than `before`; returns how many.
    async fn sweep_staging(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// A URL that downloads the object without credentials until `expires_at`.
    fn presign_get(&self, bucket: Bucket, key: &ObjectKey, expires_at: DateTime<Utc>) -> String;

    /// [`ObjectStore::presign_get`] whose response carries `Content-Disposition: disposition`
    /// (signed into the URL, so it cannot be changed).
    fn presign_get_disposition(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        expires_at: DateTime<Utc>,
        disposition: &str,
    ) -> String;

    /// Where and how a client uploads directly, enforcing `policy`.
    fn presign_upload(&self, policy: &UploadPolicy<'_>) -> UploadTarget;

    /// Server-side copy of `from` to `to` in the same bucket (overwrites `to`);
    /// [`StoreError::NotFound`] when `from` is absent.
    async fn copy(
        &self,
        bucket: Bucket,
        from: &ObjectKey,
        to: &ObjectKey,
    ) -> Result<(), StoreError>;

    /// Lists keys starting with `prefix` (a plain string prefix, not necessarily ending in `/`),
    /// at most `max` entries (objects plus common prefixes) per page. With `delimiter`, keys
    /// with a further `/` after the prefix are folded into `common_prefixes`. `page` is the
    /// `next_page` of the previous call.
    async fn list(
        &self,
        bucket: Bucket,
        prefix: &str,
        delimiter: bool,
        page: Option<&str>,
        max: usize,
    ) -> Result<ListPage, StoreError>;

    /// Stores `bytes` under `key` only if no object is there yet; otherwise
    /// [`StoreError::AlreadyExists`] and nothing is written. Atomic against concurrent writers.
    async fn put_if_absent(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        bytes: Bytes,
    ) -> Result<(), StoreError>;

    /// Checks that the store is usable.
    async fn health(&self) -> Result<(), StoreError>;

    /// Short adapter name for health reports.
    fn kind(&self) -> &'static str;
}
