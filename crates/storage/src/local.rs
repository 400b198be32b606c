//! The local-directory adapter: `{root}/{bucket}/{key}`, written through `{root}/.staging` and
//! renamed into place, so readers never see a partial object.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use photo_core::ObjectKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    Bucket, ByteStream, ListPage, ListedObject, ObjectMeta, ObjectReader, ObjectStore, StoreError,
    UploadPolicy, UploadTarget, UrlSigner,
};

/// Objects in a local directory. Signed URLs point at the API server (`public_url`), which
/// verifies them with the same [`UrlSigner`].
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    public_url: String,
    signer: UrlSigner,
}

/// Fields covered by a download signature, in order.
pub fn download_fields<'a>(bucket: Bucket, key: &'a ObjectKey, expires: &'a str) -> [&'a str; 4] {
    ["GET", bucket.as_str(), key.as_str(), expires]
}

/// Fields covered by a download signature that also fixes the `Content-Disposition`.
pub fn download_fields_disposition<'a>(
    bucket: Bucket,
    key: &'a ObjectKey,
    expires: &'a str,
    disposition: &'a str,
) -> [&'a str; 5] {
    [
        "GET-DISPOSITION",
        bucket.as_str(),
        key.as_str(),
        expires,
        disposition,
    ]
}

/// Fields covered by an upload signature, in order.
pub fn upload_fields<'a>(
    upload_id: &'a str,
    key: &'a str,
    content_type: &'a str,
    max_bytes: &'a str,
    expires: &'a str,
) -> [&'a str; 6] {
    ["UPLOAD", upload_id, key, content_type, max_bytes, expires]
}

impl LocalStore {
    /// Opens (and creates) a store under `root`.
    pub async fn open(
        root: impl Into<PathBuf>,
        public_url: impl Into<String>,
        signer: UrlSigner,
    ) -> Result<Self, StoreError> {
        let root = root.into();
        for dir in [Bucket::Raw.as_str(), Bucket::Processed.as_str(), ".staging"] {
            tokio::fs::create_dir_all(root.join(dir)).await?;
        }
        Ok(Self {
            root,
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            signer,
        })
    }

    /// The signer, for routes that verify this store's URLs.
    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    fn path(&self, bucket: Bucket, key: &ObjectKey) -> PathBuf {
        // ObjectKey guarantees no empty, `.`/`..` or backslash segments, so joining its
        // segments can never leave the bucket directory.
        let mut p = self.root.join(bucket.as_str());
        p.extend(key.segments());
        p
    }

    fn staging_path(&self) -> PathBuf {
        self.root
            .join(".staging")
            .join(uuid::Uuid::new_v4().to_string())
    }

    async fn commit(&self, staged: &Path, dest: &Path) -> Result<(), StoreError> {
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(staged, dest).await?;
        Ok(())
    }
}

async fn remove_quietly(p: &Path) {
    if let Err(e) = tokio::fs::remove_file(p).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %p.display(), error = %e, "could not remove staging file");
    }
}

fn not_found(e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StoreError::NotFound
    } else {
        StoreError::Backend(e)
    }
}

fn meta_of(m: &std::fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        size: m.len(),
        modified: m.modified().map(DateTime::<Utc>::from).unwrap_or_default(),
    }
}

#[async_trait::async_trait]
impl ObjectStore for LocalStore {
    async fn put_stream(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        mut body: ByteStream<'_>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        let staged = self.staging_path();
        let result = async {
            let mut file = tokio::fs::File::create(&staged).await?;
            let mut size: u64 = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(StoreError::Body)?;
                size = size.saturating_add(chunk.len() as u64);
                if size > limit {
                    return Err(StoreError::TooLarge { limit });
                }
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            Ok(size)
        }
        .await;
        match result {
            Ok(size) => {
                let dest = self.path(bucket, key);
                if let Err(e) = self.commit(&staged, &dest).await {
                    remove_quietly(&staged).await;
                    return Err(e);
                }
                Ok(size)
            }
            Err(e) => {
                remove_quietly(&staged).await;
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
        let staged = self.staging_path();
        let write = async {
            let mut f = tokio::fs::File::create(&staged).await?;
            f.write_all(&bytes).await?;
            f.sync_all().await
        };
        if let Err(e) = write.await {
            remove_quietly(&staged).await;
            return Err(e.into());
        }
        let dest = self.path(bucket, key);
        if let Err(e) = self.commit(&staged, &dest).await {
            remove_quietly(&staged).await;
            return Err(e);
        }
        Ok(())
    }

    async fn get_bytes(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        limit: u64,
    ) -> Result<Bytes, StoreError> {
        let path = self.path(bucket, key);
        let file = tokio::fs::File::open(&path).await.map_err(not_found)?;
        let size = file.metadata().await?.len();
        if size > limit {
            return Err(StoreError::TooLarge { limit });
        }
        let mut buf = Vec::with_capacity(size as usize);
        // `take` guards against a file that grows while being read.
        file.take(limit.saturating_add(1))
            .read_to_end(&mut buf)
            .await?;
        if buf.len() as u64 > limit {
            return Err(StoreError::TooLarge { limit });
        }
        Ok(buf.into())
    }

    async fn get_prefix(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        n: usize,
    ) -> Result<Bytes, StoreError> {
        let file = tokio::fs::File::open(self.path(bucket, key))
            .await
            .map_err(not_found)?;
        let mut buf = Vec::with_capacity(n.min(1 << 20));
        file.take(n as u64).read_to_end(&mut buf).await?;
        Ok(buf.into())
    }

    async fn open(&self, bucket: Bucket, key: &ObjectKey) -> Result<ObjectReader, StoreError> {
        let file = tokio::fs::File::open(self.path(bucket, key))
            .await
            .map_err(not_found)?;
        let meta = meta_of(&file.metadata().await?);
        let body = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
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
        use tokio::io::AsyncSeekExt;
        let mut file = tokio::fs::File::open(self.path(bucket, key))
            .await
            .map_err(not_found)?;
        let meta = meta_of(&file.metadata().await?);
        file.seek(std::io::SeekFrom::Start(range.start)).await?;
        let len = range.end.saturating_sub(range.start);
        let body = tokio_util::io::ReaderStream::with_capacity(file.take(len), 64 * 1024);
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
        match tokio::fs::metadata(self.path(bucket, key)).await {
            Ok(m) if m.is_file() => Ok(Some(meta_of(&m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, bucket: Bucket, key: &ObjectKey) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(bucket, key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_older_than(
        &self,
        bucket: Bucket,
        prefix: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, StoreError> {
        let base = self.root.join(bucket.as_str());
        let mut out = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            let mut rd = match tokio::fs::read_dir(&dir).await {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            while let Some(entry) = rd.next_entry().await? {
                let ft = entry.file_type().await?;
                if ft.is_dir() {
                    stack.push(entry.path());
                    continue;
                }
                let Ok(rel) = entry.path().strip_prefix(&base).map(Path::to_path_buf) else {
                    continue;
                };
                let Some(rel) = rel.to_str().map(str::to_owned) else {
                    continue;
                };
                if !rel.starts_with(prefix) {
                    continue;
                }
                let modified = meta_of(&entry.metadata().await?).modified;
                if modified < before
                    && let Ok(key) = ObjectKey::parse(&rel)
                {
                    out.push(key);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn sweep_staging(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut rd = tokio::fs::read_dir(self.root.join(".staging")).await?;
        let mut removed = 0;
        while let Some(entry) = rd.next_entry().await? {
            let modified = meta_of(&entry.metadata().await?).modified;
            if modified < before {
                remove_quietly(&entry.path()).await;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn presign_get(&self, bucket: Bucket, key: &ObjectKey, expires_at: DateTime<Utc>) -> String {
        let expires = expires_at.timestamp().to_string();
        let sig = self.signer.sign(&download_fields(bucket, key, &expires));
        format!(
            "{}/objects/{}/{}?expires={expires}&sig={sig}",
            self.public_url,
            bucket.as_str(),
            key.as_str()
        )
    }

    fn presign_get_disposition(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        expires_at: DateTime<Utc>,
        disposition: &str,
    ) -> String {
        let expires = expires_at.timestamp().to_string();
        let sig = self.signer.sign(&download_fields_disposition(
            bucket,
            key,
            &expires,
            disposition,
        ));
        let disposition = crate::s3::sigv4::uri_encode(disposition, false);
        format!(
            "{}/objects/{}/{}?expires={expires}&sig={sig}&disposition={disposition}",
            self.public_url,
            bucket.as_str(),
            key.as_str()
        )
    }

    fn presign_upload(&self, p: &UploadPolicy<'_>) -> UploadTarget {
        let expires = p.expires_at.timestamp().to_string();
        let max = p.max_bytes.to_string();
        let sig = self.signer.sign(&upload_fields(
            p.upload_id,
            p.key.as_str(),
            p.content_type,
            &max,
            &expires,
        ));
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("key".to_owned(), p.key.as_str().to_owned());
        fields.insert("Content-Type".to_owned(), p.content_type.to_owned());
        UploadTarget {
            method: "POST",
            url: format!(
                "{}/uploads/{}/object?expires={expires}&sig={sig}",
                self.public_url, p.upload_id
            ),
            fields,
            headers: Default::default(),
        }
    }

    async fn copy(
        &self,
        bucket: Bucket,
        from: &ObjectKey,
        to: &ObjectKey,
    ) -> Result<(), StoreError> {
        // Copy into staging, then rename: a reader of `to` never sees a partial copy.
        let staged = self.staging_path();
        if let Err(e) = tokio::fs::copy(self.path(bucket, from), &staged).await {
            remove_quietly(&staged).await;
            return Err(not_found(e));
        }
        let dest = self.path(bucket, to);
        if let Err(e) = self.commit(&staged, &dest).await {
            remove_quietly(&staged).await;
            return Err(e);
        }
        Ok(())
    }

    async fn list(
        &self,
        bucket: Bucket,
        prefix: &str,
        delimiter: bool,
        page: Option<&str>,
        max: usize,
    ) -> Result<ListPage, StoreError> {
        let base = self.root.join(bucket.as_str());
        // Walk only the deepest directory the prefix names in full. A segment that no key
        // may contain (`..`, …) matches nothing, and is never joined onto the path.
        let mut start = base.clone();
        if let Some((dirs, _)) = prefix.rsplit_once('/') {
            for seg in dirs.split('/') {
                if photo_core::key::validate_segment(seg).is_err() {
                    return Ok(ListPage::default());
                }
                start.push(seg);
            }
        }
        let mut keys = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let mut rd = match tokio::fs::read_dir(&dir).await {
                Ok(rd) => rd,
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.kind() == std::io::ErrorKind::NotADirectory =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            while let Some(entry) = rd.next_entry().await? {
                if entry.file_type().await?.is_dir() {
                    stack.push(entry.path());
                    continue;
                }
                let Some(rel) = entry
                    .path()
                    .strip_prefix(&base)
                    .ok()
                    .and_then(|p| p.to_str().map(str::to_owned))
                else {
                    continue;
                };
                if rel.starts_with(prefix) {
                    keys.push((rel, meta_of(&entry.metadata().await?)));
                }
            }
        }
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        // Merge objects and folded prefixes into one ordered sequence of names; a page token
        // is the last name returned.
        enum Entry {
            Object(ListedObject),
            Prefix(String),
        }
        let mut entries: Vec<(String, Entry)> = Vec::new();
        for (rel, meta) in keys {
            if delimiter && let Some(i) = rel[prefix.len()..].find('/') {
                let p = rel[..prefix.len() + i + 1].to_owned();
                if entries.last().map(|(n, _)| n) != Some(&p) {
                    entries.push((p.clone(), Entry::Prefix(p)));
                }
                continue;
            }
            if let Ok(key) = ObjectKey::parse(&rel) {
                entries.push((rel, Entry::Object(ListedObject { key, meta })));
            }
        }
        let max = max.max(1);
        let mut out = ListPage::default();
        let mut taken = 0;
        let mut last = None;
        let mut more = false;
        for (name, entry) in entries {
            if page.is_some_and(|p| name.as_str() <= p) {
                continue;
            }
            if taken == max {
                more = true;
                break;
            }
            taken += 1;
            match entry {
                Entry::Object(o) => out.objects.push(o),
                Entry::Prefix(p) => out.common_prefixes.push(p),
            }
            last = Some(name);
        }
        out.next_page = if more { last } else { None };
        Ok(out)
    }

    async fn put_if_absent(
        &self,
        bucket: Bucket,
        key: &ObjectKey,
        bytes: Bytes,
    ) -> Result<(), StoreError> {
        let staged = self.staging_path();
        let write = async {
            let mut f = tokio::fs::File::create(&staged).await?;
            f.write_all(&bytes).await?;
            f.sync_all().await
        };
        if let Err(e) = write.await {
            remove_quietly(&staged).await;
            return Err(e.into());
        }
        let dest = self.path(bucket, key);
        let linked = async {
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            // A hard link fails if `dest` exists, atomically: the conditional create.
            tokio::fs::hard_link(&staged, &dest).await
        }
        .await;
        remove_quietly(&staged).await;
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StoreError::AlreadyExists)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn health(&self) -> Result<(), StoreError> {
        // A write+delete proves the disk is writable, not just present.
        let probe = self.root.join(".staging").join(".health");
        tokio::fs::write(&probe, b"ok").await?;
        tokio::fs::remove_file(&probe).await?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "local"
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used)]
    use super::*;
    use photo_core::{TenantId, UploadId};

    fn chunks(parts: Vec<&'static [u8]>) -> ByteStream<'static> {
        Box::pin(futures_util::stream::iter(
            parts.into_iter().map(|p| Ok(Bytes::from_static(p))),
        ))
    }

    async fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path(), "http://h", UrlSigner::new(vec![7; 32]))
            .await
            .unwrap();
        (dir, s)
    }

    fn staging_is_empty(dir: &Path) -> bool {
        std::fs::read_dir(dir.join(".staging"))
            .unwrap()
            .next()
            .is_none()
    }

    #[tokio::test]
    async fn stream_within_limit_is_stored_atomically() {
        let (dir, s) = store().await;
        let key = ObjectKey::raw_upload(&TenantId::default_tenant(), UploadId::new());
        let n = s
            .put_stream(Bucket::Raw, &key, chunks(vec![b"abc", b"def"]), 6)
            .await
            .unwrap();
        assert_eq!(n, 6);
        assert_eq!(
            &s.get_bytes(Bucket::Raw, &key, 100).await.unwrap()[..],
            b"abcdef"
        );
        assert_eq!(
            &s.get_prefix(Bucket::Raw, &key, 2).await.unwrap()[..],
            b"ab"
        );
        assert!(matches!(
            s.get_bytes(Bucket::Raw, &key, 5).await,
            Err(StoreError::TooLarge { limit: 5 })
        ));
        assert!(s.head(Bucket::Processed, &key).await.unwrap().is_none());
        assert!(staging_is_empty(dir.path()));
    }

    #[tokio::test]
    async fn oversize_or_failed_stream_leaves_nothing() {
        let (dir, s) = store().await;
        let key = ObjectKey::raw_upload(&TenantId::default_tenant(), UploadId::new());
        let r = s
            .put_stream(Bucket::Raw, &key, chunks(vec![b"abc", b"def"]), 5)
            .await;
        assert!(matches!(r, Err(StoreError::TooLarge { limit: 5 })));
        assert!(s.head(Bucket::Raw, &key).await.unwrap().is_none());
        let failing: ByteStream<'static> = Box::pin(futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(std::io::Error::other("client went away")),
        ]));
        assert!(matches!(
            s.put_stream(Bucket::Raw, &key, failing, 100).await,
            Err(StoreError::Body(_))
        ));
        assert!(s.head(Bucket::Raw, &key).await.unwrap().is_none());
        assert!(staging_is_empty(dir.path()));
    }

    #[tokio::test]
    async fn signed_urls_verify() {
        let (_dir, s) = store().await;
        let key = ObjectKey::parse("tenants/t/jobs/x/a.jpg").unwrap();
        let exp = Utc::now();
        let url = s.presign_get(Bucket::Processed, &key, exp);
        let sig = url.rsplit("sig=").next().unwrap();
        let e = exp.timestamp().to_string();
        assert!(
            s.signer()
                .verify(&download_fields(Bucket::Processed, &key, &e), sig)
        );
        assert!(
            !s.signer()
                .verify(&download_fields(Bucket::Raw, &key, &e), sig)
        );
    }

    #[tokio::test]
    async fn lists_old_objects_and_sweeps_staging() {
        let (dir, s) = store().await;
        let t = TenantId::default_tenant();
        let key = ObjectKey::raw_upload(&t, UploadId::new());
        s.put_bytes(Bucket::Raw, &key, Bytes::from_static(b"x"))
            .await
            .unwrap();
        let future = Utc::now() + chrono::Duration::seconds(5);
        let old = s
            .list_older_than(Bucket::Raw, "tenants/", future, 10)
            .await
            .unwrap();
        assert_eq!(old, vec![key.clone()]);
        let none = s
            .list_older_than(
                Bucket::Raw,
                "tenants/",
                Utc::now() - chrono::Duration::hours(1),
                10,
            )
            .await
            .unwrap();
        assert!(none.is_empty());
        std::fs::write(dir.path().join(".staging/leftover"), b"half").unwrap();
        assert_eq!(s.sweep_staging(future).await.unwrap(), 1);
        assert!(staging_is_empty(dir.path()));
        s.delete(Bucket::Raw, &key).await.unwrap();
        s.delete(Bucket::Raw, &key).await.unwrap();
        assert!(matches!(
            s.open(Bucket::Raw, &key).await,
            Err(StoreError::NotFound)
        ));
    }
}
