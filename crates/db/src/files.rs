//! The tenant file tree of the file API: a row per file and per folder, keyed by tenant and
//! path. File bytes live in the processed bucket under id-based keys the rows point to, so a
//! move or rename is a row update (atomic, whatever the size of the folder) and a copy shares the
//! object. Objects no row points to any more are queued in `file_gc` and deleted by the sweeper
//! once a grace period has passed, which also covers writes interrupted before their row landed.
//!
//! Both databases run the same SQL (numbered `$n` parameters, byte-order text comparison), so
//! the implementation is one macro instantiated per driver.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use photo_core::{ContentType, FilePath, ObjectKey, TenantId};

use crate::DbError;

/// A file or folder of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Owner.
    pub tenant: TenantId,
    /// Full path.
    pub path: FilePath,
    /// A folder (no bytes) or a file.
    pub is_folder: bool,
    /// Where a file's bytes are.
    pub object_key: Option<ObjectKey>,
    /// Bytes (0 for folders).
    pub size: u64,
    /// The sniffed, validated type of a file.
    pub content_type: Option<ContentType>,
    /// Strong validator of a file's bytes (hex SHA-256).
    pub etag: Option<String>,
    /// Image width from the header.
    pub width: Option<u32>,
    /// Image height from the header.
    pub height: Option<u32>,
    /// User metadata, sanitised at the edge.
    pub metadata: BTreeMap<String, String>,
    /// First written.
    pub created_at: DateTime<Utc>,
    /// Last written, moved or copied onto.
    pub updated_at: DateTime<Utc>,
}

/// A file to record once its bytes are stored.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Owner.
    pub tenant: TenantId,
    /// Where.
    pub path: FilePath,
    /// Its object (already written).
    pub object_key: ObjectKey,
    /// Bytes.
    pub size: u64,
    /// Sniffed type.
    pub content_type: ContentType,
    /// Hex SHA-256 of the bytes.
    pub etag: String,
    /// Width from the header.
    pub width: Option<u32>,
    /// Height from the header.
    pub height: Option<u32>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
}

/// Why a file-tree change was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileConflict {
    /// Nothing at the (source) path.
    #[error("no such file or folder")]
    NotFound,
    /// Something is at the destination and overwriting was not asked for (or is impossible).
    #[error("'{0}' already exists")]
    Exists(String),
    /// A folder where a file is needed.
    #[error("'{0}' is a folder")]
    IsFolder(String),
    /// A file where a folder is needed (the path itself or one of its parents).
    #[error("'{0}' is a file, not a folder")]
    NotFolder(String),
    /// A folder moved or copied into itself.
    #[error("a folder cannot be moved or copied into itself")]
    IntoItself,
    /// More entries than the caller allows in one operation.
    #[error("the folder holds {count} entries, more than the limit of {limit}")]
    TooMany {
        /// Entries found.
        count: u64,
        /// The limit.
        limit: u64,
    },
}

/// A file-tree failure: the database, or a refusal.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The change was refused.
    #[error(transparent)]
    Conflict(#[from] FileConflict),
}

impl From<sqlx::Error> for FileError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Sqlx(e))
    }
}

/// Result of file-tree changes.
pub type FileResult<T> = Result<T, FileError>;

/// A copy or move of a file or folder within one tenant's tree.
#[derive(Debug, Clone, Copy)]
pub struct Transfer<'a> {
    /// Owner.
    pub tenant: &'a TenantId,
    /// The file or folder.
    pub from: &'a FilePath,
    /// Its new path.
    pub to: &'a FilePath,
    /// A file may replace a file at `to`.
    pub overwrite: bool,
    /// Most entries (the folder itself included) the operation may touch.
    pub limit: u64,
}

/// What a folder deletion step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeleteProgress {
    /// Files removed by this step.
    pub files: u64,
    /// Folders removed by this step (the folder itself included once it is empty).
    pub folders: u64,
    /// Whether the folder is gone.
    pub done: bool,
}

/// The file tree. Every method is scoped to one tenant.
#[async_trait::async_trait]
pub trait FileRepo: Send + Sync {
    /// One entry.
    async fn file_get(
        &self,
        tenant: &TenantId,
        path: &FilePath,
    ) -> crate::DbResult<Option<FileRecord>>;

    /// Records a file whose object is stored, creating missing parent folders. An existing file
    /// is replaced only with `overwrite` (its old object is queued for deletion at `gc_at`).
    /// Clears the object's write intent. Returns the new record.
    async fn file_put(
        &self,
        file: &NewFile,
        overwrite: bool,
        now: DateTime<Utc>,
        gc_at: DateTime<Utc>,
    ) -> FileResult<FileRecord>;

    /// Creates a folder and its missing parents; `false` when it already existed.
    async fn folder_create(
        &self,
        tenant: &TenantId,
        path: &FilePath,
        now: DateTime<Utc>,
    ) -> FileResult<bool>;

    /// Entries of `folder` (the root when `None`) in byte order of their names — or, with
    /// `recursive`, every entry below it in byte order of their paths — after `after` (the last
    /// name or path of the previous page), at most `limit`.
    async fn file_list(
        &self,
        tenant: &TenantId,
        folder: Option<&FilePath>,
        recursive: bool,
        after: Option<&str>,
        limit: u32,
    ) -> crate::DbResult<Vec<FileRecord>>;

    /// Deletes one file; its object is queued for deletion at `gc_at`.
    async fn file_delete(
        &self,
        tenant: &TenantId,
        path: &FilePath,
        gc_at: DateTime<Utc>,
    ) -> FileResult<FileRecord>;

    /// Deletes up to `batch` entries below folder `path` in one transaction (objects queued for
    /// deletion at `gc_at`), and the folder itself once nothing is left below it. Call again
    /// until `done`: an interrupted deletion resumes where it stopped.
    async fn folder_delete_step(
        &self,
        tenant: &TenantId,
        path: &FilePath,
        batch: u32,
        gc_at: DateTime<Utc>,
    ) -> FileResult<DeleteProgress>;

    /// Copies a file (sharing its object) or a whole folder to `to`, in one transaction.
    /// A file may replace a file with `overwrite`; a folder needs a free destination. At most
    /// `limit` entries. Returns how many entries were created.
    async fn file_copy(
        &self,
        t: &Transfer<'_>,
        now: DateTime<Utc>,
        gc_at: DateTime<Utc>,
    ) -> FileResult<u64>;

    /// Moves a file or a whole folder to `to` in one transaction: the entries are at the old
    /// place or at the new one, never both or neither. Same rules as [`FileRepo::file_copy`].
    async fn file_move(
        &self,
        t: &Transfer<'_>,
        now: DateTime<Utc>,
        gc_at: DateTime<Utc>,
    ) -> FileResult<u64>;

    /// Records that `key` is about to be written: unless a file row points to it by
    /// `not_before`, the sweeper deletes it then (an upload interrupted before its row landed).
    async fn file_object_intent(
        &self,
        key: &ObjectKey,
        not_before: DateTime<Utc>,
    ) -> crate::DbResult<()>;

    /// Objects queued for deletion and due at `now`, that no file row points to, at most
    /// `limit`. Entries whose object turned out to be in use are dropped from the queue.
    async fn file_gc_due(&self, now: DateTime<Utc>, limit: u32) -> crate::DbResult<Vec<ObjectKey>>;

    /// Removes `key` from the deletion queue (after deleting the object, or when abandoning a
    /// write whose object was already deleted).
    async fn file_gc_forget(&self, key: &ObjectKey) -> crate::DbResult<()>;
}

/// The exclusive upper bound of paths strictly inside `folder`: `folder/` < p < `folder0`.
pub(crate) fn subtree_bounds(folder: &FilePath) -> (String, String) {
    (format!("{folder}/"), format!("{folder}0"))
}

/// Implements [`FileRepo`] for a repository type with a `pool` field, given its driver's row
/// type and the statement that opens a write transaction.
macro_rules! file_repo {
    ($repo:ty, $row:ty, $begin:literal) => {
        fn file_from_row(r: &$row) -> $crate::DbResult<$crate::files::FileRecord> {
            use sqlx::Row;
            use $crate::rows::corrupt;
            let metadata: Option<String> = r.try_get("metadata")?;
            let metadata = match metadata {
                Some(s) => serde_json::from_str(&s).map_err(|e| corrupt("file metadata", e))?,
                None => Default::default(),
            };
            let opt_u32 = |c: &str| -> $crate::DbResult<Option<u32>> {
                Ok(r.try_get::<Option<i64>, _>(c)?
                    .map(|v| v.clamp(0, i64::from(u32::MAX)) as u32))
            };
            Ok($crate::files::FileRecord {
                tenant: photo_core::TenantId::parse(&r.try_get::<String, _>("tenant_id")?)
                    .map_err(|e| corrupt("tenant", e))?,
                path: photo_core::FilePath::parse(&r.try_get::<String, _>("path")?)
                    .map_err(|e| corrupt("path", e))?,
                is_folder: r.try_get::<i64, _>("is_folder")? != 0,
                object_key: r
                    .try_get::<Option<String>, _>("object_key")?
                    .map(|k| photo_core::ObjectKey::parse(&k).map_err(|e| corrupt("key", e)))
                    .transpose()?,
                size: r.try_get::<Option<i64>, _>("size")?.unwrap_or(0).max(0) as u64,
                content_type: r
                    .try_get::<Option<String>, _>("content_type")?
                    .map(|s| photo_core::ContentType::parse(&s).map_err(|e| corrupt("type", e)))
                    .transpose()?,
                etag: r.try_get("etag")?,
                width: opt_u32("width")?,
                height: opt_u32("height")?,
                metadata,
                created_at: $crate::rows::from_ms(r.try_get("created_at_ms")?),
                updated_at: $crate::rows::from_ms(r.try_get("updated_at_ms")?),
            })
        }

        const FILE_COLUMNS: &str = "tenant_id, path, is_folder, object_key, size, content_type, \
             etag, width, height, metadata, created_at_ms, updated_at_ms";

        /// The entry at `path`, inside a transaction.
        async fn file_at<'c, E>(
            ex: E,
            tenant: &photo_core::TenantId,
            path: &str,
        ) -> $crate::DbResult<Option<$crate::files::FileRecord>>
        where
            E: sqlx::Executor<'c, Database = <$row as sqlx::Row>::Database>,
        {
            let sql = format!("SELECT {FILE_COLUMNS} FROM files WHERE tenant_id = $1 AND path = $2");
            sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(path)
                .fetch_optional(ex)
                .await?
                .as_ref()
                .map(file_from_row)
                .transpose()
        }

        /// Creates the missing folders of `ancestors` (outermost first); a file in the way is a
        /// conflict.
        async fn ensure_folders(
            tx: &mut sqlx::Transaction<'static, <$row as sqlx::Row>::Database>,
            tenant: &photo_core::TenantId,
            ancestors: &[&str],
            now_ms: i64,
        ) -> $crate::files::FileResult<()> {
            use $crate::files::FileConflict;
            for a in ancestors {
                match file_at(&mut **tx, tenant, a).await? {
                    Some(f) if f.is_folder => {}
                    Some(_) => return Err(FileConflict::NotFolder((*a).to_owned()).into()),
                    None => {
                        // Concurrent uploads into one new folder all try to create it (on
                        // PostgreSQL; SQLite's write lock serialises them): the first wins,
                        // the others find its row — a folder, or a file in the way.
                        let (parent, name) = a.rsplit_once('/').unwrap_or(("", a));
                        let added = sqlx::query(
                            "INSERT INTO files (tenant_id, path, parent, name, is_folder, size,
                                 created_at_ms, updated_at_ms)
                             VALUES ($1, $2, $3, $4, 1, 0, $5, $5)
                             ON CONFLICT DO NOTHING",
                        )
                        .bind(tenant.as_str())
                        .bind(*a)
                        .bind(parent)
                        .bind(name)
                        .bind(now_ms)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                        if added == 0
                            && !file_at(&mut **tx, tenant, a).await?.is_some_and(|f| f.is_folder)
                        {
                            return Err(FileConflict::NotFolder((*a).to_owned()).into());
                        }
                    }
                }
            }
            Ok(())
        }

        /// Queues objects for deletion (a key already queued keeps its earlier time).
        async fn gc_queue(
            tx: &mut sqlx::Transaction<'static, <$row as sqlx::Row>::Database>,
            keys: &[String],
            at_ms: i64,
        ) -> $crate::DbResult<()> {
            for k in keys {
                sqlx::query(
                    "INSERT INTO file_gc (object_key, not_before_ms) VALUES ($1, $2)
                     ON CONFLICT (object_key) DO NOTHING",
                )
                .bind(k)
                .bind(at_ms)
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        /// Counts the entries strictly inside `folder`.
        async fn subtree_count(
            tx: &mut sqlx::Transaction<'static, <$row as sqlx::Row>::Database>,
            tenant: &photo_core::TenantId,
            folder: &photo_core::FilePath,
        ) -> $crate::DbResult<u64> {
            use sqlx::Row;
            let (lo, hi) = $crate::files::subtree_bounds(folder);
            let n: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM files WHERE tenant_id = $1 AND path > $2 AND path < $3",
            )
            .bind(tenant.as_str())
            .bind(lo)
            .bind(hi)
            .fetch_one(&mut **tx)
            .await?
            .try_get("n")?;
            Ok(n.max(0) as u64)
        }

        /// Checks a copy or move of `from` to `to` and prepares the destination: returns the
        /// source entry and the number of entries below it. A file replacing a file (with
        /// `overwrite`) has its old row removed and its object queued.
        async fn prepare_transfer(
            tx: &mut sqlx::Transaction<'static, <$row as sqlx::Row>::Database>,
            t: &$crate::files::Transfer<'_>,
            now_ms: i64,
            gc_ms: i64,
        ) -> $crate::files::FileResult<($crate::files::FileRecord, u64)> {
            use $crate::files::FileConflict;
            let (tenant, from, to, overwrite, limit) = (t.tenant, t.from, t.to, t.overwrite, t.limit);
            let Some(src) = file_at(&mut **tx, tenant, from.as_str()).await? else {
                return Err(FileConflict::NotFound.into());
            };
            if to == from || (src.is_folder && to.is_inside(from)) {
                return Err(FileConflict::IntoItself.into());
            }
            let inner = if src.is_folder {
                subtree_count(tx, tenant, from).await?
            } else {
                0
            };
            if inner + 1 > limit {
                return Err(FileConflict::TooMany {
                    count: inner + 1,
                    limit,
                }
                .into());
            }
            ensure_folders(tx, tenant, &to.ancestors(), now_ms).await?;
            match file_at(&mut **tx, tenant, to.as_str()).await? {
                None => {}
                Some(dst) if dst.is_folder => {
                    return Err(FileConflict::Exists(to.to_string()).into());
                }
                Some(_) if src.is_folder || !overwrite => {
                    return Err(FileConflict::Exists(to.to_string()).into());
                }
                Some(dst) => {
                    sqlx::query("DELETE FROM files WHERE tenant_id = $1 AND path = $2")
                        .bind(tenant.as_str())
                        .bind(to.as_str())
                        .execute(&mut **tx)
                        .await?;
                    if let Some(k) = dst.object_key {
                        gc_queue(tx, &[k.to_string()], gc_ms).await?;
                    }
                }
            }
            Ok((src, inner))
        }

        #[async_trait::async_trait]
        impl $crate::files::FileRepo for $repo {
            #[tracing::instrument(name = "db.file_get", level = "debug", skip_all, err(level = "debug"))]
            async fn file_get(
                &self,
                tenant: &photo_core::TenantId,
                path: &photo_core::FilePath,
            ) -> $crate::DbResult<Option<$crate::files::FileRecord>> {
                file_at(&self.pool, tenant, path.as_str()).await
            }

            #[tracing::instrument(name = "db.file_put", level = "debug", skip_all)]
            async fn file_put(
                &self,
                f: &$crate::files::NewFile,
                overwrite: bool,
                now: chrono::DateTime<chrono::Utc>,
                gc_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::files::FileResult<$crate::files::FileRecord> {
                use $crate::files::FileConflict;
                let now_ms = $crate::rows::ms(now);
                let mut tx = self.pool.begin_with($begin).await?;
                ensure_folders(&mut tx, &f.tenant, &f.path.ancestors(), now_ms).await?;
                let existing = file_at(&mut *tx, &f.tenant, f.path.as_str()).await?;
                let mut created_ms = now_ms;
                match existing {
                    Some(e) if e.is_folder => {
                        return Err(FileConflict::IsFolder(f.path.to_string()).into());
                    }
                    Some(_) if !overwrite => {
                        return Err(FileConflict::Exists(f.path.to_string()).into());
                    }
                    Some(e) => {
                        created_ms = $crate::rows::ms(e.created_at);
                        sqlx::query("DELETE FROM files WHERE tenant_id = $1 AND path = $2")
                            .bind(f.tenant.as_str())
                            .bind(f.path.as_str())
                            .execute(&mut *tx)
                            .await?;
                        if let Some(k) = e.object_key.filter(|k| *k != f.object_key) {
                            gc_queue(&mut tx, &[k.to_string()], $crate::rows::ms(gc_at)).await?;
                        }
                    }
                    None => {}
                }
                let metadata = if f.metadata.is_empty() {
                    None
                } else {
                    Some(serde_json::to_string(&f.metadata).unwrap_or_default())
                };
                // A concurrent upload to the same new path (PostgreSQL) may have inserted it
                // since we looked: it won, and this one is a conflict, never a 500.
                let added = sqlx::query(
                    "INSERT INTO files (tenant_id, path, parent, name, is_folder, object_key, size,
                         content_type, etag, width, height, metadata, created_at_ms, updated_at_ms)
                     VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                     ON CONFLICT DO NOTHING",
                )
                .bind(f.tenant.as_str())
                .bind(f.path.as_str())
                .bind(f.path.parent())
                .bind(f.path.name())
                .bind(f.object_key.as_str())
                .bind(i64::try_from(f.size).unwrap_or(i64::MAX))
                .bind(f.content_type.mime())
                .bind(&f.etag)
                .bind(f.width.map(i64::from))
                .bind(f.height.map(i64::from))
                .bind(metadata)
                .bind(created_ms)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if added == 0 {
                    return Err(FileConflict::Exists(f.path.to_string()).into());
                }
                sqlx::query("DELETE FROM file_gc WHERE object_key = $1")
                    .bind(f.object_key.as_str())
                    .execute(&mut *tx)
                    .await?;
                let rec = file_at(&mut *tx, &f.tenant, f.path.as_str())
                    .await?
                    .ok_or(FileConflict::NotFound)?;
                tx.commit().await?;
                Ok(rec)
            }

            #[tracing::instrument(name = "db.folder_create", level = "debug", skip_all)]
            async fn folder_create(
                &self,
                tenant: &photo_core::TenantId,
                path: &photo_core::FilePath,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::files::FileResult<bool> {
                use $crate::files::FileConflict;
                let mut tx = self.pool.begin_with($begin).await?;
                let existing = file_at(&mut *tx, tenant, path.as_str()).await?;
                match existing {
                    Some(e) if e.is_folder => return Ok(false),
                    Some(_) => return Err(FileConflict::NotFolder(path.to_string()).into()),
                    None => {}
                }
                let mut all = path.ancestors();
                all.push(path.as_str());
                ensure_folders(&mut tx, tenant, &all, $crate::rows::ms(now)).await?;
                tx.commit().await?;
                Ok(true)
            }

            #[tracing::instrument(name = "db.file_list", level = "debug", skip_all, err(level = "debug"))]
            async fn file_list(
                &self,
                tenant: &photo_core::TenantId,
                folder: Option<&photo_core::FilePath>,
                recursive: bool,
                after: Option<&str>,
                limit: u32,
            ) -> $crate::DbResult<Vec<$crate::files::FileRecord>> {
                let after = after.unwrap_or("");
                let limit = i64::from(limit);
                let rows = match (recursive, folder) {
                    (false, f) => {
                        let sql = format!(
                            "SELECT {FILE_COLUMNS} FROM files
                             WHERE tenant_id = $1 AND parent = $2 AND name > $3
                             ORDER BY name LIMIT $4"
                        );
                        sqlx::query(&sql)
                            .bind(tenant.as_str())
                            .bind(f.map_or("", |f| f.as_str()))
                            .bind(after)
                            .bind(limit)
                            .fetch_all(&self.pool)
                            .await?
                    }
                    (true, None) => {
                        let sql = format!(
                            "SELECT {FILE_COLUMNS} FROM files
                             WHERE tenant_id = $1 AND path > $2 ORDER BY path LIMIT $3"
                        );
                        sqlx::query(&sql)
                            .bind(tenant.as_str())
                            .bind(after)
                            .bind(limit)
                            .fetch_all(&self.pool)
                            .await?
                    }
                    (true, Some(f)) => {
                        let (lo, hi) = $crate::files::subtree_bounds(f);
                        let lo = if after > lo.as_str() { after.to_owned() } else { lo };
                        let sql = format!(
                            "SELECT {FILE_COLUMNS} FROM files
                             WHERE tenant_id = $1 AND path > $2 AND path < $3
                             ORDER BY path LIMIT $4"
                        );
                        sqlx::query(&sql)
                            .bind(tenant.as_str())
                            .bind(lo)
                            .bind(hi)
                            .bind(limit)
                            .fetch_all(&self.pool)
                            .await?
                    }
                };
                rows.iter().map(file_from_row).collect()
            }

            #[tracing::instrument(name = "db.file_delete", level = "debug", skip_all)]
            async fn file_delete(
                &self,
                tenant: &photo_core::TenantId,
                path: &photo_core::FilePath,
                gc_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::files::FileResult<$crate::files::FileRecord> {
                use $crate::files::FileConflict;
                let mut tx = self.pool.begin_with($begin).await?;
                let Some(f) = file_at(&mut *tx, tenant, path.as_str()).await? else {
                    return Err(FileConflict::NotFound.into());
                };
                if f.is_folder {
                    return Err(FileConflict::IsFolder(path.to_string()).into());
                }
                sqlx::query("DELETE FROM files WHERE tenant_id = $1 AND path = $2")
                    .bind(tenant.as_str())
                    .bind(path.as_str())
                    .execute(&mut *tx)
                    .await?;
                if let Some(k) = &f.object_key {
                    gc_queue(&mut tx, &[k.to_string()], $crate::rows::ms(gc_at)).await?;
                }
                tx.commit().await?;
                Ok(f)
            }

            #[tracing::instrument(name = "db.folder_delete_step", level = "debug", skip_all)]
            async fn folder_delete_step(
                &self,
                tenant: &photo_core::TenantId,
                path: &photo_core::FilePath,
                batch: u32,
                gc_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::files::FileResult<$crate::files::DeleteProgress> {
                use sqlx::Row;
                use $crate::files::{DeleteProgress, FileConflict};
                let mut tx = self.pool.begin_with($begin).await?;
                match file_at(&mut *tx, tenant, path.as_str()).await? {
                    None => return Err(FileConflict::NotFound.into()),
                    Some(f) if !f.is_folder => {
                        return Err(FileConflict::NotFolder(path.to_string()).into());
                    }
                    Some(_) => {}
                }
                let (lo, hi) = $crate::files::subtree_bounds(path);
                let rows = sqlx::query(
                    "SELECT path, is_folder, object_key FROM files
                     WHERE tenant_id = $1 AND path > $2 AND path < $3
                     ORDER BY path LIMIT $4",
                )
                .bind(tenant.as_str())
                .bind(&lo)
                .bind(&hi)
                .bind(i64::from(batch.max(1)))
                .fetch_all(&mut *tx)
                .await?;
                let mut progress = DeleteProgress::default();
                let mut keys = Vec::new();
                for r in &rows {
                    let p: String = r.try_get("path")?;
                    if r.try_get::<i64, _>("is_folder")? != 0 {
                        progress.folders += 1;
                    } else {
                        progress.files += 1;
                    }
                    if let Some(k) = r.try_get::<Option<String>, _>("object_key")? {
                        keys.push(k);
                    }
                    sqlx::query("DELETE FROM files WHERE tenant_id = $1 AND path = $2")
                        .bind(tenant.as_str())
                        .bind(p)
                        .execute(&mut *tx)
                        .await?;
                }
                gc_queue(&mut tx, &keys, $crate::rows::ms(gc_at)).await?;
                if subtree_count(&mut tx, tenant, path).await? == 0 {
                    sqlx::query("DELETE FROM files WHERE tenant_id = $1 AND path = $2")
                        .bind(tenant.as_str())
                        .bind(path.as_str())
                        .execute(&mut *tx)
                        .await?;
                    progress.folders += 1;
                    progress.done = true;
                }
                tx.commit().await?;
                Ok(progress)
            }

            #[tracing::instrument(name = "db.file_copy", level = "debug", skip_all)]
            async fn file_copy(
                &self,
                t: &$crate::files::Transfer<'_>,
                now: chrono::DateTime<chrono::Utc>,
                gc_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::files::FileResult<u64> {
                let (tenant, from, to) = (t.tenant, t.from, t.to);
                let now_ms = $crate::rows::ms(now);
                let mut tx = self.pool.begin_with($begin).await?;
                let (_, inner) =
                    prepare_transfer(&mut tx, t, now_ms, $crate::rows::ms(gc_at)).await?;
                let (lo, hi) = $crate::files::subtree_bounds(from);
                // The entry itself, then everything below it, paths rewritten under `to`.
                sqlx::query(
                    "INSERT INTO files (tenant_id, path, parent, name, is_folder, object_key, size,
                         content_type, etag, width, height, metadata, created_at_ms, updated_at_ms)
                     SELECT tenant_id, $3, $4, $5, is_folder, object_key, size, content_type, etag,
                         width, height, metadata, $6, $6
                     FROM files WHERE tenant_id = $1 AND path = $2",
                )
                .bind(tenant.as_str())
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(to.parent())
                .bind(to.name())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                let cut = i64::try_from(from.as_str().chars().count() + 1).unwrap_or(i64::MAX);
                sqlx::query(
                    "INSERT INTO files (tenant_id, path, parent, name, is_folder, object_key, size,
                         content_type, etag, width, height, metadata, created_at_ms, updated_at_ms)
                     SELECT tenant_id, $4 || substr(path, CAST($5 AS INTEGER)), $4 || substr(parent, CAST($5 AS INTEGER)), name,
                         is_folder, object_key, size, content_type, etag, width, height, metadata,
                         $6, $6
                     FROM files WHERE tenant_id = $1 AND path > $2 AND path < $3",
                )
                .bind(tenant.as_str())
                .bind(&lo)
                .bind(&hi)
                .bind(to.as_str())
                .bind(cut)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(inner + 1)
            }

            #[tracing::instrument(name = "db.file_move", level = "debug", skip_all)]
            async fn file_move(
                &self,
                t: &$crate::files::Transfer<'_>,
                now: chrono::DateTime<chrono::Utc>,
                gc_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::files::FileResult<u64> {
                let (tenant, from, to) = (t.tenant, t.from, t.to);
                let now_ms = $crate::rows::ms(now);
                let mut tx = self.pool.begin_with($begin).await?;
                let (_, inner) =
                    prepare_transfer(&mut tx, t, now_ms, $crate::rows::ms(gc_at)).await?;
                let (lo, hi) = $crate::files::subtree_bounds(from);
                let cut = i64::try_from(from.as_str().chars().count() + 1).unwrap_or(i64::MAX);
                sqlx::query(
                    "UPDATE files SET path = $4 || substr(path, CAST($5 AS INTEGER)),
                         parent = $4 || substr(parent, CAST($5 AS INTEGER))
                     WHERE tenant_id = $1 AND path > $2 AND path < $3",
                )
                .bind(tenant.as_str())
                .bind(&lo)
                .bind(&hi)
                .bind(to.as_str())
                .bind(cut)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE files SET path = $3, parent = $4, name = $5, updated_at_ms = $6
                     WHERE tenant_id = $1 AND path = $2",
                )
                .bind(tenant.as_str())
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(to.parent())
                .bind(to.name())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(inner + 1)
            }

            #[tracing::instrument(name = "db.file_object_intent", level = "debug", skip_all, err(level = "debug"))]
            async fn file_object_intent(
                &self,
                key: &photo_core::ObjectKey,
                not_before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::DbResult<()> {
                sqlx::query(
                    "INSERT INTO file_gc (object_key, not_before_ms) VALUES ($1, $2)
                     ON CONFLICT (object_key) DO UPDATE SET not_before_ms = $2",
                )
                .bind(key.as_str())
                .bind($crate::rows::ms(not_before))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            #[tracing::instrument(name = "db.file_gc_due", level = "debug", skip_all, err(level = "debug"))]
            async fn file_gc_due(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::DbResult<Vec<photo_core::ObjectKey>> {
                use sqlx::Row;
                let now_ms = $crate::rows::ms(now);
                // Queued objects that a row points to again (a copy shares its object) stay.
                sqlx::query(
                    "DELETE FROM file_gc WHERE not_before_ms <= $1
                     AND EXISTS (SELECT 1 FROM files f WHERE f.object_key = file_gc.object_key)",
                )
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
                let rows = sqlx::query(
                    "SELECT object_key FROM file_gc WHERE not_before_ms <= $1
                     ORDER BY not_before_ms, object_key LIMIT $2",
                )
                .bind(now_ms)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        let k: String = r.try_get("object_key")?;
                        photo_core::ObjectKey::parse(&k)
                            .map_err(|e| $crate::rows::corrupt("gc key", e))
                    })
                    .collect()
            }

            #[tracing::instrument(name = "db.file_gc_forget", level = "debug", skip_all, err(level = "debug"))]
            async fn file_gc_forget(&self, key: &photo_core::ObjectKey) -> $crate::DbResult<()> {
                sqlx::query("DELETE FROM file_gc WHERE object_key = $1")
                    .bind(key.as_str())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}
pub(crate) use file_repo;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtree_bounds_cover_exactly_the_folder() {
        let f = FilePath::parse("a/b").unwrap_or_else(|e| panic!("{e}"));
        let (lo, hi) = subtree_bounds(&f);
        let inside = |p: &str| p > lo.as_str() && p < hi.as_str();
        assert!(inside("a/b/c"));
        assert!(inside("a/b/\u{10ffff}"));
        assert!(inside("a/b/ "));
        assert!(!inside("a/b"));
        assert!(!inside("a/b0"));
        assert!(!inside("a/b-c"), "'-' sorts before '/'");
        assert!(!inside("a/bc"));
        assert!(!inside("a/b.jpg"));
    }
}
