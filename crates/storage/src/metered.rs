//! [`Metered`]: wraps any [`ObjectStore`] to time every call into
//! `photo_api_storage_operation_duration_seconds`, count failures into
//! `photo_api_storage_errors_total`, and trace each call as a `storage.<operation>` span.
//!
//! Not-found, too-large, already-exists and client body errors are answers, not storage
//! failures, and are not counted as errors. Streaming reads are timed until the stream opens.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use photo_core::ObjectKey;
use photo_core::metrics::metrics;
use tracing::Instrument;

use crate::{
    Bucket, ByteStream, ListPage, ObjectMeta, ObjectReader, ObjectStore, StoreError, UploadPolicy,
    UploadTarget,
};

/// An [`ObjectStore`] that records metrics and spans around another.
#[derive(Debug)]
pub struct Metered(pub Arc<dyn ObjectStore>);

impl Metered {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(Metered(inner))
    }
}

fn is_failure(e: &StoreError) -> bool {
    !matches!(
        e,
        StoreError::NotFound
            | StoreError::TooLarge { .. }
            | StoreError::Body(_)
            | StoreError::AlreadyExists
    )
}

async fn timed<T>(
    op: &'static str,
    span: tracing::Span,
    f: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let start = Instant::now();
    let r = f.instrument(span.clone()).await;
    let m = metrics();
    m.storage_duration
        .observe([op], start.elapsed().as_secs_f64());
    if let Err(e) = &r
        && is_failure(e)
    {
        m.storage_errors.inc([op]);
        tracing::debug!(parent: &span, error = %e, "storage call failed");
    }
    r
}

macro_rules! span {
    ($op:literal, $bucket:expr) => {
        tracing::debug_span!(concat!("storage.", $op), bucket = $bucket.as_str())
    };
}

#[async_trait::async_trait]
impl ObjectStore for Metered {
    async fn put_stream(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        body: ByteStream<'_>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        timed(
            "put_stream",
            span!("put_stream", bucket),
            self.0.put_stream(bucket, key, body, limit),
        )
        .await
    }

    async fn put_bytes(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        bytes: Bytes,
    ) -> Result<(), StoreError> {
        timed(
            "put_bytes",
            span!("put_bytes", bucket),
            self.0.put_bytes(bucket, key, bytes),
        )
        .await
    }

    async fn get_bytes(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        limit: u64,
    ) -> Result<Bytes, StoreError> {
        timed(
            "get_bytes",
            span!("get_bytes", bucket),
            self.0.get_bytes(bucket, key, limit),
        )
        .await
    }

    async fn get_prefix(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        n: usize,
    ) -> Result<Bytes, StoreError> {
        timed(
            "get_prefix",
            span!("get_prefix", bucket),
            self.0.get_prefix(bucket, key, n),
        )
        .await
    }

    async fn open(&self, bucket: Bucket, key: &ObjectKey) -> Result<ObjectReader, StoreError> {
        timed("open", span!("open", bucket), self.0.open(bucket, key)).await
    }

    async fn open_range(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        range: std::ops::Range<u64>,
    ) -> Result<ObjectReader, StoreError> {
        timed(
            "open_range",
            span!("open_range", bucket),
            self.0.open_range(bucket, key, range),
        )
        .await
    }

    async fn head(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
    ) -> Result<Option<ObjectMeta>, StoreError> {
        timed("head", span!("head", bucket), self.0.head(bucket, key)).await
    }

    async fn delete(&self, bucket: Bucket, key: &ObjectKey) -> Result<(), StoreError> {
        timed(
            "delete",
            span!("delete", bucket),
            self.0.delete(bucket, key),
        )
        .await
    }

    async fn list_older_than(
        &self,
        bucket: Bucket,
        prefix: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, StoreError> {
        timed(
            "list_older_than",
            span!("list_older_than", bucket),
            self.0.list_older_than(bucket, prefix, before, limit),
        )
        .await
    }

    async fn sweep_staging(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        timed(
            "sweep_staging",
            tracing::debug_span!("storage.sweep_staging"),
            self.0.sweep_staging(before),
        )
        .await
    }

    fn presign_get(&self, bucket: Bucket, key: &ObjectKey, expires_at: DateTime<Utc>) -> String {
        self.0.presign_get(bucket, key, expires_at)
    }

    fn presign_get_disposition(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        expires_at: DateTime<Utc>,
        disposition: &str,
    ) -> String {
        self.0
            .presign_get_disposition(bucket, key, expires_at, disposition)
    }

    fn presign_upload(&self, policy: &UploadPolicy<'_>) -> UploadTarget {
        self.0.presign_upload(policy)
    }

    async fn copy(
        &self,
        bucket: Bucket,
        from: &ObjectKey,
        to: &ObjectKey,
    ) -> Result<(), StoreError> {
        timed("copy", span!("copy", bucket), self.0.copy(bucket, from, to)).await
    }

    async fn list(
        &self,
        bucket: Bucket,
        prefix: &str,
        delimiter: bool,
        page: Option<&str>,
        max: usize,
    ) -> Result<ListPage, StoreError> {
        timed(
            "list",
            span!("list", bucket),
            self.0.list(bucket, prefix, delimiter, page, max),
        )
        .await
    }

    async fn put_if_absent(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        bytes: Bytes,
    ) -> Result<(), StoreError> {
        timed(
            "put_if_absent",
            span!("put_if_absent", bucket),
            self.0.put_if_absent(bucket, key, bytes),
        )
        .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        timed(
            "health",
            tracing::debug_span!("storage.health"),
            self.0.health(),
        )
        .await
    }

    fn kind(&self) -> &'static str {
        self.0.kind()
    }
}
