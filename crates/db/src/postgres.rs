//! The PostgreSQL repository: the scaled-out backend. API and worker processes on any number of
//! hosts share one database. Each queue transition is one statement: a claim picks its row with
//! `FOR UPDATE SKIP LOCKED` (concurrent claimers pass over each other's rows instead of waiting
//! or taking the same one) and every later transition is fenced by the claim's random lease
//! token. Idle workers are woken by `LISTEN photo_jobs`, which a trigger notifies whenever a job
//! becomes claimable; polling remains the fallback.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use photo_core::{
    BatchId, ContentType, JobId, JobSpec, JobStatus, JobType, ObjectKey, TenantId, UploadId,
};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};
use tokio::sync::Notify;

use crate::migrate;
use crate::models::*;
use crate::rows::{corrupt, from_ms, ms, parse};
use crate::{DbError, DbResult, Repo};

/// The channel the `job_logs_notify` trigger notifies.
const CHANNEL: &str = "photo_jobs";

/// Connection pool settings of [`PgRepo`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections this process holds.
    pub max_connections: u32,
    /// How long a query waits for a free (or new) connection before failing with an
    /// "unavailable" error; keeps requests from hanging while the database is down.
    pub acquire_timeout: Duration,
    /// Server-side limit of one statement (`statement_timeout`); zero disables it.
    pub statement_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// The PostgreSQL repository. Clones share the pool and the notification listener.
#[derive(Debug, Clone)]
pub struct PgRepo {
    pool: PgPool,
    wake: Arc<Wake>,
}

/// Accepts `postgres://`, `postgresql://` and the design documents' `postgresql+asyncpg://`.
fn connect_options(url: &str) -> DbResult<PgConnectOptions> {
    let url = url.trim();
    let normalised = match url.strip_prefix("postgresql+asyncpg://") {
        Some(rest) => format!("postgres://{rest}"),
        None => url.to_owned(),
    };
    if !(normalised.starts_with("postgres://") || normalised.starts_with("postgresql://")) {
        return Err(DbError::BadUrl(
            "a PostgreSQL URL starts with postgres://, postgresql:// or postgresql+asyncpg://"
                .to_owned(),
        ));
    }
    Ok(PgConnectOptions::from_str(&normalised)?)
}

impl PgRepo {
    /// Connects to `url` (one connection is opened now, so a wrong URL or a database that is
    /// down fails here) without migrating.
    pub async fn connect_url(url: &str, opts: &PgOptions) -> DbResult<Self> {
        let connect = connect_options(url)?.application_name("photo-api");
        let timeout_ms = opts.statement_timeout.as_millis().to_string();
        let pooled = connect
            .clone()
            .options([("statement_timeout", timeout_ms.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            // A connection that died with the server (restart, failover) is noticed and
            // replaced before use, so the pool recovers by itself.
            .test_before_acquire(true)
            .connect_with(pooled)
            .await?;
        Ok(Self {
            pool,
            wake: Arc::new(Wake {
                notify: Arc::new(Notify::new()),
                task: OnceLock::new(),
                connect,
                acquire_timeout: opts.acquire_timeout,
            }),
        })
    }

    /// Connects and runs pending migrations.
    pub async fn open_url(url: &str, opts: &PgOptions) -> DbResult<Self> {
        let repo = Self::connect_url(url, opts).await?;
        repo.migrate().await?;
        Ok(repo)
    }

    /// Applies pending migrations under an advisory lock, so processes starting together
    /// run each one once.
    pub async fn migrate(&self) -> DbResult<usize> {
        migrate::pg_up(&self.pool, migrate::POSTGRES).await
    }

    /// Reverts the newest `steps` migrations.
    pub async fn migrate_down(&self, steps: usize) -> DbResult<usize> {
        migrate::pg_down(&self.pool, migrate::POSTGRES, steps).await
    }

    /// The newest schema version this build knows (test template databases are named by it).
    pub fn schema_version() -> i64 {
        migrate::latest(migrate::POSTGRES)
    }

    /// How many migrations this build has (the same on both databases).
    pub fn migration_count() -> usize {
        migrate::POSTGRES.len()
    }

    /// The pool, for tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool and stops the listener.
    pub async fn close(&self) {
        self.wake.stop();
        self.pool.close().await;
    }
}

/// Wakes the waiters of one repository (and its clones) on `NOTIFY photo_jobs`. The listener
/// runs on its own one-connection pool so it never takes a connection queries need; it is
/// started by the first waiter, reconnects by itself, and stops when the last clone is dropped.
#[derive(Debug)]
struct Wake {
    notify: Arc<Notify>,
    task: OnceLock<tokio::task::AbortHandle>,
    connect: PgConnectOptions,
    acquire_timeout: Duration,
}

impl Wake {
    fn ensure_started(&self) {
        self.task.get_or_init(|| {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(self.acquire_timeout)
                .connect_lazy_with(self.connect.clone());
            tokio::spawn(listen(pool, self.notify.clone())).abort_handle()
        });
    }

    fn stop(&self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wakes every current waiter, and leaves one permit so a worker that is between its empty
/// claim and its wait does not sleep through the news.
fn wake_all(notify: &Notify) {
    notify.notify_waiters();
    notify.notify_one();
}

async fn listen(pool: PgPool, notify: Arc<Notify>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "job notification listener cannot connect; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::debug!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(250);
        // Anything sent while we were not listening is lost: let waiters look for themselves.
        wake_all(&notify);
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => wake_all(&notify),
                // The connection dropped and was re-established (and re-subscribed).
                Ok(None) => wake_all(&notify),
                Err(e) => {
                    tracing::debug!(error = %e, "job notification listener lost its connection");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

crate::rows::decoders!(PgRow);
crate::files::file_repo!(PgRepo, PgRow, "BEGIN");
crate::tenants::tenant_repo!(PgRepo, PgRow, "BEGIN", " FOR UPDATE");

async fn insert_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: &TenantId,
    e: &NewAuditEntry,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (at, tenant_id, actor, actor_tenant, action, target, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.at)
    .bind(tenant.as_str())
    .bind(&e.actor)
    .bind(e.actor_tenant.as_ref().map(TenantId::as_str))
    .bind(&e.action)
    .bind(&e.target)
    .bind(e.detail.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl Repo for PgRepo {
    #[tracing::instrument(name = "db.health", level = "debug", skip_all, err(level = "debug"))]
    async fn health(&self) -> DbResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    #[tracing::instrument(
        name = "db.insert_api_key",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn insert_api_key(&self, k: &ApiKeyRecord) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (key_id, tenant_id, name, secret_sha256, scopes, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&k.key_id)
        .bind(k.tenant.as_str())
        .bind(&k.name)
        .bind(&k.secret_sha256)
        .bind(k.scopes.join(","))
        .bind(k.created_at)
        .bind(k.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(
        name = "db.find_api_key",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn find_api_key(&self, key_id: &str) -> DbResult<Option<ApiKeyRecord>> {
        sqlx::query("SELECT * FROM api_keys WHERE key_id = $1")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(api_key_from_row)
            .transpose()
    }

    #[tracing::instrument(
        name = "db.touch_api_key",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn touch_api_key(&self, key_id: &str, at: DateTime<Utc>) -> DbResult<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE key_id = $2")
            .bind(at)
            .bind(key_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    #[tracing::instrument(
        name = "db.count_api_keys",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn count_api_keys(&self) -> DbResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    #[tracing::instrument(
        name = "db.create_api_key",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn create_api_key(&self, k: &ApiKeyRecord, audit: &NewAuditEntry) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        ensure_tenant(&mut tx, &k.tenant, audit).await?;
        sqlx::query(
            "INSERT INTO api_keys (key_id, tenant_id, name, secret_sha256, scopes, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&k.key_id)
        .bind(k.tenant.as_str())
        .bind(&k.name)
        .bind(&k.secret_sha256)
        .bind(k.scopes.join(","))
        .bind(k.created_at)
        .bind(k.expires_at)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, &k.tenant, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(
        name = "db.list_api_keys",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn list_api_keys(&self, tenant: Option<&TenantId>) -> DbResult<Vec<ApiKeyRecord>> {
        sqlx::query(
            "SELECT * FROM api_keys WHERE ($1::text IS NULL OR tenant_id = $1)
             ORDER BY created_at, key_id",
        )
        .bind(tenant.map(TenantId::as_str))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(api_key_from_row)
        .collect()
    }

    #[tracing::instrument(
        name = "db.revoke_api_key",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn revoke_api_key(
        &self,
        tenant: Option<&TenantId>,
        key_id: &str,
        audit: &NewAuditEntry,
    ) -> DbResult<Option<ApiKeyRecord>> {
        let mut tx = self.pool.begin().await?;
        // FOR UPDATE: two revocations of one key serialise, so only one records it.
        let Some(row) = sqlx::query(
            "SELECT * FROM api_keys WHERE key_id = $1 AND ($2::text IS NULL OR tenant_id = $2)
             FOR UPDATE",
        )
        .bind(key_id)
        .bind(tenant.map(TenantId::as_str))
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let mut key = api_key_from_row(&row)?;
        if key.revoked_at.is_none() {
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2")
                .bind(audit.at)
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
            insert_audit(&mut tx, &key.tenant, audit).await?;
            key.revoked_at = Some(audit.at);
        }
        tx.commit().await?;
        Ok(Some(key))
    }

    #[tracing::instrument(
        name = "db.list_audit",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn list_audit(
        &self,
        tenant: Option<&TenantId>,
        before: Option<i64>,
        limit: u32,
    ) -> DbResult<Vec<AuditEntry>> {
        sqlx::query(
            "SELECT * FROM audit_log WHERE ($1::text IS NULL OR tenant_id = $1)
               AND ($2::bigint IS NULL OR seq < $2)
             ORDER BY seq DESC LIMIT $3",
        )
        .bind(tenant.map(TenantId::as_str))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
    }

    #[tracing::instrument(
        name = "db.insert_upload",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn insert_upload(&self, u: &NewUpload) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO uploads (upload_id, tenant_id, object_key, declared_content_type, max_bytes,
                 filename, status, created_at, url_expires_at, expires_at_ms, file_path,
                 file_overwrite, eager_jobs)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $11, $12)",
        )
        .bind(u.upload_id.to_string())
        .bind(u.tenant.as_str())
        .bind(u.key.as_str())
        .bind(u.declared.mime())
        .bind(i64::try_from(u.max_bytes).unwrap_or(i64::MAX))
        .bind(&u.filename)
        .bind(u.created_at)
        .bind(u.url_expires_at)
        .bind(ms(u.expires_at))
        .bind(u.file_path.as_ref().map(|p| p.as_str().to_owned()))
        .bind(i64::from(u.file_overwrite))
        .bind(if u.eager_jobs.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&u.eager_jobs).map_err(|e| corrupt("eager_jobs", e))?)
        })
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(
        name = "db.get_upload",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn get_upload(
        &self,
        tenant: Option<&TenantId>,
        id: UploadId,
    ) -> DbResult<Option<Upload>> {
        let row = match tenant {
            Some(t) => {
                sqlx::query("SELECT * FROM uploads WHERE upload_id = $1 AND tenant_id = $2")
                    .bind(id.to_string())
                    .bind(t.as_str())
                    .fetch_optional(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM uploads WHERE upload_id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.as_ref().map(upload_from_row).transpose()
    }

    #[tracing::instrument(
        name = "db.mark_uploaded",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn mark_uploaded(&self, id: UploadId, size: u64, at: DateTime<Utc>) -> DbResult<bool> {
        let r = sqlx::query(
            "UPDATE uploads SET status = 'uploaded', size = $1, uploaded_at = $2
             WHERE upload_id = $3 AND status IN ('pending', 'uploaded')",
        )
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(at)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    #[tracing::instrument(
        name = "db.complete_upload_with_jobs",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn complete_upload_with_jobs(
        &self,
        id: UploadId,
        outcome: &UploadOutcome,
        jobs: &[NewJob],
        at: DateTime<Utc>,
    ) -> DbResult<Option<Upload>> {
        let q = match outcome {
            UploadOutcome::Ready {
                content_type,
                size,
                width,
                height,
                promoted_key,
            } => sqlx::query(
                "UPDATE uploads SET status = 'ready', content_type = $1, size = $2, width = $3,
                     height = $4, completed_at = $5, object_key = COALESCE($7, object_key)
                 WHERE upload_id = $6 AND status = 'uploaded' RETURNING *",
            )
            .bind(content_type.mime())
            .bind(i64::try_from(*size).unwrap_or(i64::MAX))
            .bind(i64::from(*width))
            .bind(i64::from(*height))
            .bind(at)
            .bind(id.to_string())
            .bind(promoted_key.as_ref().map(ObjectKey::as_str)),
            UploadOutcome::Rejected { code, reason } => sqlx::query(
                "UPDATE uploads SET status = 'rejected', reject_code = $1, reason = $2,
                     completed_at = $3
                 WHERE upload_id = $4 AND status = 'uploaded' RETURNING *",
            )
            .bind(code)
            .bind(reason)
            .bind(at)
            .bind(id.to_string()),
        };
        let mut tx = self.pool.begin().await?;
        let Some(row) = q.fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        let mut up = upload_from_row(&row)?;
        if up.status == UploadStatus::Ready && !jobs.is_empty() {
            for j in jobs {
                insert_job_row(&mut *tx, j, at, None).await?;
            }
            let ids: Vec<String> = jobs.iter().map(|j| j.job_id.to_string()).collect();
            sqlx::query("UPDATE uploads SET eager_job_ids = $1 WHERE upload_id = $2")
                .bind(serde_json::to_string(&ids).map_err(|e| corrupt("eager_job_ids", e))?)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            up.eager_job_ids = jobs.iter().map(|j| j.job_id).collect();
        }
        tx.commit().await?;
        Ok(Some(up))
    }

    #[tracing::instrument(
        name = "db.expired_uploads",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn expired_uploads(&self, now: DateTime<Utc>, limit: u32) -> DbResult<Vec<Upload>> {
        sqlx::query(
            "SELECT * FROM uploads WHERE expires_at_ms <= $1 AND status <> 'expired'
             ORDER BY expires_at_ms LIMIT $2",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(upload_from_row)
        .collect()
    }

    #[tracing::instrument(
        name = "db.mark_upload_expired",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn mark_upload_expired(&self, id: UploadId) -> DbResult<()> {
        sqlx::query("UPDATE uploads SET status = 'expired' WHERE upload_id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    #[tracing::instrument(
        name = "db.insert_job",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn insert_job(&self, j: &NewJob, now: DateTime<Utc>) -> DbResult<Job> {
        insert_job_row(&self.pool, j, now, None).await
    }

    #[tracing::instrument(name = "db.get_job", level = "debug", skip_all, err(level = "debug"))]
    async fn get_job(&self, tenant: &TenantId, id: JobId) -> DbResult<Option<Job>> {
        sqlx::query("SELECT * FROM job_logs WHERE job_id = $1 AND tenant_id = $2")
            .bind(id.to_string())
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    #[tracing::instrument(
        name = "db.get_job_any_tenant",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn get_job_any_tenant(&self, id: JobId) -> DbResult<Option<Job>> {
        sqlx::query("SELECT * FROM job_logs WHERE job_id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    #[tracing::instrument(name = "db.list_jobs", level = "debug", skip_all, err(level = "debug"))]
    async fn list_jobs(&self, tenant: &TenantId, f: &JobFilter) -> DbResult<Vec<Job>> {
        // UUIDv7 ids sort by creation time, so the id alone is a stable cursor (`job_id` is
        // `COLLATE "C"`: byte order, as on SQLite, whatever the database's locale).
        let mut qb =
            sqlx::QueryBuilder::<sqlx::Postgres>::new("SELECT * FROM job_logs WHERE tenant_id = ");
        qb.push_bind(tenant.as_str());
        if let Some(s) = f.status {
            qb.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(t) = f.job_type {
            qb.push(" AND job_type = ").push_bind(t.as_str());
        }
        if let Some(a) = f.created_after {
            qb.push(" AND created_at >= ").push_bind(a);
        }
        if let Some(b) = f.created_before {
            qb.push(" AND created_at < ").push_bind(b);
        }
        if let Some(b) = f.batch_id {
            qb.push(" AND batch_id = ").push_bind(b.to_string());
        }
        if let Some(c) = f.before_id {
            qb.push(" AND job_id < ").push_bind(c.to_string());
        }
        qb.push(" ORDER BY job_id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        qb.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(job_from_row)
            .collect()
    }

    #[tracing::instrument(
        name = "db.job_events",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn job_events(&self, id: JobId) -> DbResult<Vec<JobEvent>> {
        let rows = sqlx::query(
            "SELECT seq, status, attempt, message,
                 to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS at
             FROM job_events WHERE kind = 'job' AND job_id = $1 ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JobEvent {
                    seq: r.try_get("seq")?,
                    status: r.try_get("status")?,
                    attempt: r.try_get::<i64, _>("attempt")?.clamp(0, u32::MAX as i64) as u32,
                    message: r.try_get("message")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    #[tracing::instrument(
        name = "db.events_after",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn events_after(
        &self,
        tenant: &TenantId,
        job: Option<JobId>,
        after: i64,
        limit: u32,
    ) -> DbResult<Vec<StreamEvent>> {
        let rows = sqlx::query(
            "SELECT seq, job_id, status, attempt, message, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS at
             FROM job_events
             WHERE kind = 'job' AND tenant_id = $1 AND seq > $2 AND ($3 IS NULL OR job_id = $3)
             ORDER BY seq LIMIT $4",
        )
        .bind(tenant.as_str())
        .bind(after)
        .bind(job.map(|j| j.to_string()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StreamEvent {
                    seq: r.try_get("seq")?,
                    job_id: r.try_get("job_id")?,
                    status: r.try_get("status")?,
                    attempt: r.try_get::<i64, _>("attempt")?.clamp(0, u32::MAX as i64) as u32,
                    message: r.try_get("message")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    #[tracing::instrument(
        name = "db.cancel_job",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn cancel_job(
        &self,
        tenant: &TenantId,
        id: JobId,
        now: DateTime<Utc>,
    ) -> DbResult<Option<Job>> {
        sqlx::query(
            "UPDATE job_logs SET status = 'cancelled', completed_at = $1, outputs = NULL, result = NULL,
                 error_code = 'cancelled', error_message = 'cancelled on request',
                 lease_owner = NULL, lease_token = NULL, lease_expires_at_ms = NULL, updated_at = $1
             WHERE job_id = $2 AND tenant_id = $3 AND status IN ('submitted', 'retrying', 'started')
             RETURNING *",
        )
        .bind(now)
        .bind(id.to_string())
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(job_from_row)
        .transpose()
    }

    #[tracing::instrument(name = "db.retry_job", level = "debug", skip_all, err(level = "debug"))]
    async fn retry_job(
        &self,
        tenant: &TenantId,
        id: JobId,
        workflow_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> DbResult<Option<Job>> {
        sqlx::query(
            "UPDATE job_logs SET status = 'submitted', attempts = 0, run_at_ms = $1,
                 started_at = NULL, completed_at = NULL, outputs = NULL, result = NULL, error_code = NULL,
                 error_message = NULL, lease_owner = NULL, lease_token = NULL,
                 lease_expires_at_ms = NULL, updated_at = $2,
                 temporal_workflow_id = CASE WHEN engine = 'temporal'
                     THEN COALESCE($3, temporal_workflow_id) ELSE temporal_workflow_id END,
                 temporal_dispatched_at_ms = CASE WHEN engine = 'temporal'
                     THEN NULL ELSE temporal_dispatched_at_ms END
             WHERE job_id = $4 AND tenant_id = $5 AND status IN ('failed', 'dead')
             RETURNING *",
        )
        .bind(ms(now))
        .bind(now)
        .bind(workflow_id)
        .bind(id.to_string())
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(job_from_row)
        .transpose()
    }

    #[tracing::instrument(
        name = "db.expired_jobs",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn expired_jobs(&self, before: DateTime<Utc>, limit: u32) -> DbResult<Vec<Job>> {
        sqlx::query(
            "SELECT * FROM job_logs
             WHERE status IN ('completed', 'failed', 'dead', 'cancelled') AND completed_at < $1
             ORDER BY completed_at LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    #[tracing::instrument(
        name = "db.delete_job",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn delete_job(&self, id: JobId) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM job_events WHERE job_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM job_logs WHERE job_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(
        name = "db.insert_batch",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn insert_batch(
        &self,
        tenant: &TenantId,
        batch_id: BatchId,
        jobs: &[NewJob],
        now: DateTime<Utc>,
    ) -> DbResult<Vec<Job>> {
        let bid = batch_id.to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO batches (batch_id, tenant_id, total, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&bid)
        .bind(tenant.as_str())
        .bind(i64::try_from(jobs.len()).unwrap_or(i64::MAX))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(jobs.len());
        for j in jobs {
            out.push(insert_job_row(&mut *tx, j, now, Some(&bid)).await?);
        }
        tx.commit().await?;
        // In job id order, as before (the rows were read back `ORDER BY job_id`).
        out.sort_by_cached_key(|j| j.job_id.to_string());
        Ok(out)
    }

    #[tracing::instrument(name = "db.get_batch", level = "debug", skip_all, err(level = "debug"))]
    async fn get_batch(
        &self,
        tenant: &TenantId,
        batch_id: BatchId,
    ) -> DbResult<Option<(Batch, Vec<(JobStatus, u64)>)>> {
        let bid = batch_id.to_string();
        let Some(row) = sqlx::query(
            "SELECT batch_id, tenant_id, total, created_at, cancelled_at, finished_at,
                 finished_status FROM batches
             WHERE batch_id = $1 AND tenant_id = $2",
        )
        .bind(&bid)
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let batch = Batch {
            batch_id,
            tenant: tenant.clone(),
            total: row.try_get::<i64, _>("total")?.max(0) as u64,
            created_at: row.try_get("created_at")?,
            cancelled_at: row.try_get("cancelled_at")?,
            finished_at: row.try_get("finished_at")?,
            finished_status: row.try_get("finished_status")?,
        };
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM job_logs WHERE batch_id = $1 GROUP BY status",
        )
        .bind(&bid)
        .fetch_all(&self.pool)
        .await?;
        let counts = rows
            .iter()
            .map(|r| {
                let s: String = r.try_get("status")?;
                let n: i64 = r.try_get("n")?;
                Ok((
                    JobStatus::parse(&s).ok_or_else(|| corrupt("status", &s))?,
                    n.max(0) as u64,
                ))
            })
            .collect::<DbResult<Vec<_>>>()?;
        Ok(Some((batch, counts)))
    }

    #[tracing::instrument(
        name = "db.cancel_batch",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn cancel_batch(
        &self,
        tenant: &TenantId,
        batch_id: BatchId,
        now: DateTime<Utc>,
    ) -> DbResult<Option<Vec<Job>>> {
        let bid = batch_id.to_string();
        let mut tx = self.pool.begin().await?;
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM batches WHERE batch_id = $1 AND tenant_id = $2")
                .bind(&bid)
                .bind(tenant.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if found.is_none() {
            return Ok(None);
        }
        // The jobs first, then the batch row: the order in which a finishing job's trigger
        // takes the two locks (job row, then batch row), so the two never deadlock.
        let mut ids: Vec<String> = sqlx::query_scalar(
            "UPDATE job_logs SET status = 'cancelled', completed_at = $1, outputs = NULL, result = NULL,
                 error_code = 'cancelled', error_message = 'cancelled on request',
                 lease_owner = NULL, lease_token = NULL, lease_expires_at_ms = NULL, updated_at = $1
             WHERE batch_id = $2 AND status IN ('submitted', 'retrying', 'started')
             RETURNING job_id",
        )
        .bind(now)
        .bind(&bid)
        .fetch_all(&mut *tx)
        .await?;
        ids.sort();
        sqlx::query(
            "UPDATE batches SET cancelled_at = COALESCE(cancelled_at, $1)
             WHERE batch_id = $2 AND tenant_id = $3",
        )
        .bind(now)
        .bind(&bid)
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query("SELECT * FROM job_logs WHERE job_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            jobs.push(job_from_row(&row)?);
        }
        tx.commit().await?;
        Ok(Some(jobs))
    }

    #[tracing::instrument(
        name = "db.insert_webhook",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn insert_webhook(&self, h: &Webhook) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO webhooks (webhook_id, tenant_id, url, event_types, secret, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&h.webhook_id)
        .bind(h.tenant.as_str())
        .bind(&h.url)
        .bind(h.event_types.join(","))
        .bind(&h.secret)
        .bind(h.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(
        name = "db.list_webhooks",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn list_webhooks(&self, tenant: &TenantId) -> DbResult<Vec<Webhook>> {
        let rows = sqlx::query(
            "SELECT * FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, webhook_id",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Webhook {
                    webhook_id: r.try_get("webhook_id")?,
                    tenant: tenant.clone(),
                    url: r.try_get("url")?,
                    event_types: r
                        .try_get::<String, _>("event_types")?
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    secret: r.try_get("secret")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    #[tracing::instrument(
        name = "db.delete_webhook",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn delete_webhook(&self, tenant: &TenantId, id: &str) -> DbResult<bool> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("DELETE FROM webhooks WHERE webhook_id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    #[tracing::instrument(
        name = "db.list_deliveries",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        limit: u32,
    ) -> DbResult<Option<Vec<WebhookDelivery>>> {
        let owned: Option<String> = sqlx::query_scalar(
            "SELECT webhook_id FROM webhooks WHERE webhook_id = $1 AND tenant_id = $2",
        )
        .bind(webhook_id)
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?;
        if owned.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT * FROM webhook_deliveries WHERE webhook_id = $1
             ORDER BY event_seq DESC LIMIT $2",
        )
        .bind(webhook_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(delivery_from_row)
            .collect::<DbResult<Vec<_>>>()
            .map(Some)
    }

    #[tracing::instrument(
        name = "db.webhook_fanout",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn webhook_fanout(&self, now: DateTime<Utc>, limit: u32) -> DbResult<u64> {
        let mut tx = self.pool.begin().await?;
        let cursor: i64 =
            sqlx::query_scalar("SELECT last_seq FROM webhook_cursor WHERE id = 1 FOR UPDATE")
                .fetch_one(&mut *tx)
                .await?;
        let rows = sqlx::query(
            "SELECT e.seq, e.kind, e.job_id, e.tenant_id, e.status, e.attempt, e.message, j.batch_id,
                 j.job_type, j.error_code, b.total AS batch_total, b.finished_counts,
                 b.finished_at AS batch_finished_at
             FROM job_events e
             LEFT JOIN job_logs j ON e.kind = 'job' AND j.job_id = e.job_id
             LEFT JOIN batches b ON e.kind = 'batch' AND b.batch_id = e.job_id
             WHERE e.seq > $1 ORDER BY e.seq LIMIT $2",
        )
        .bind(cursor)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows
            .last()
            .map(|r| r.try_get::<i64, _>("seq"))
            .transpose()?
        else {
            return Ok(0);
        };
        let mut hooks: std::collections::HashMap<String, Vec<(String, Vec<String>)>> =
            std::collections::HashMap::new();
        let mut made = 0;
        for r in &rows {
            let status: String = r.try_get("status")?;
            let kind: String = r.try_get("kind")?;
            if !matches!(
                status.as_str(),
                "completed" | "failed" | "dead" | "cancelled"
            ) || !matches!(kind.as_str(), "job" | "batch")
            {
                continue;
            }
            let event_type = format!("{kind}.{status}");
            let tenant: String = r.try_get("tenant_id")?;
            if !hooks.contains_key(&tenant) {
                let list = sqlx::query(
                    "SELECT webhook_id, event_types FROM webhooks WHERE tenant_id = $1",
                )
                .bind(&tenant)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|h| {
                    Ok((
                        h.try_get::<String, _>("webhook_id")?,
                        h.try_get::<String, _>("event_types")?
                            .split(',')
                            .map(str::to_owned)
                            .collect(),
                    ))
                })
                .collect::<DbResult<Vec<_>>>()?;
                hooks.insert(tenant.clone(), list);
            }
            let seq: i64 = r.try_get("seq")?;
            let payload = if kind == "batch" {
                let counts: serde_json::Value = r
                    .try_get::<Option<String>, _>("finished_counts")?
                    .map(|c| serde_json::from_str(&c).map_err(|e| corrupt("finished_counts", e)))
                    .transpose()?
                    .unwrap_or_default();
                serde_json::json!({
                    "id": format!("evt_{seq}"),
                    "type": event_type,
                    "created_at": now,
                    "data": {
                        "batch_id": r.try_get::<String, _>("job_id")?,
                        "status": status,
                        "total": r.try_get::<Option<i64>, _>("batch_total")?,
                        "counts": counts,
                        "finished_at": r.try_get::<Option<DateTime<Utc>>, _>("batch_finished_at")?,
                    }
                })
                .to_string()
            } else {
                serde_json::json!({
                    "id": format!("evt_{seq}"),
                    "type": event_type,
                    "created_at": now,
                    "data": {
                        "job_id": r.try_get::<String, _>("job_id")?,
                        "job_type": r.try_get::<Option<String>, _>("job_type")?,
                        "status": status,
                        "attempt": r.try_get::<i64, _>("attempt")?,
                        "error_code": r.try_get::<Option<String>, _>("error_code")?,
                        "message": r.try_get::<Option<String>, _>("message")?,
                        "batch_id": r.try_get::<Option<String>, _>("batch_id")?,
                    }
                })
                .to_string()
            };
            for (hook, types) in hooks.get(&tenant).map(Vec::as_slice).unwrap_or_default() {
                if !types.contains(&event_type) {
                    continue;
                }
                let r = sqlx::query(
                    "INSERT INTO webhook_deliveries (delivery_id, webhook_id, tenant_id, event_seq,
                         event_type, payload, next_attempt_at_ms, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(hook)
                .bind(&tenant)
                .bind(seq)
                .bind(&event_type)
                .bind(&payload)
                .bind(ms(now))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                made += r.rows_affected();
            }
        }
        sqlx::query("UPDATE webhook_cursor SET last_seq = $1 WHERE id = 1")
            .bind(last)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(made)
    }

    #[tracing::instrument(
        name = "db.claim_deliveries",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u32,
    ) -> DbResult<Vec<DueDelivery>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT d.*, w.url AS hook_url, w.secret AS hook_secret
             FROM webhook_deliveries d JOIN webhooks w ON w.webhook_id = d.webhook_id
             WHERE d.status = 'pending' AND d.next_attempt_at_ms <= $1
             ORDER BY d.next_attempt_at_ms LIMIT $2 FOR UPDATE OF d SKIP LOCKED",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let d = delivery_from_row(r)?;
            sqlx::query(
                "UPDATE webhook_deliveries SET next_attempt_at_ms = $1 WHERE delivery_id = $2",
            )
            .bind(ms(now + lease))
            .bind(&d.delivery_id)
            .execute(&mut *tx)
            .await?;
            out.push(DueDelivery {
                url: r.try_get("hook_url")?,
                secret: r.try_get("hook_secret")?,
                delivery: d,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(
        name = "db.record_delivery",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn record_delivery(
        &self,
        delivery_id: &str,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> DbResult<()> {
        match outcome {
            DeliveryOutcome::Delivered { status_code } => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1,
                         last_status_code = $1, last_error = NULL, delivered_at = $2
                     WHERE delivery_id = $3 AND status = 'pending'",
                )
                .bind(i64::from(*status_code))
                .bind(now)
                .bind(delivery_id)
                .execute(&self.pool)
                .await?;
            }
            DeliveryOutcome::Failed {
                status_code,
                error,
                retry_at,
            } => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET
                         status = CASE WHEN $1 IS NULL THEN 'failed' ELSE 'pending' END,
                         next_attempt_at_ms = COALESCE($1, next_attempt_at_ms),
                         attempts = attempts + 1, last_status_code = $2, last_error = $3
                     WHERE delivery_id = $4 AND status = 'pending'",
                )
                .bind(retry_at.map(ms))
                .bind(status_code.map(i64::from))
                .bind(error)
                .bind(delivery_id)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    #[tracing::instrument(
        name = "db.idempotency_reserve",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn idempotency_reserve(
        &self,
        key: &IdempotencyScope<'_>,
        request_sha256: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> DbResult<Option<IdempotencyRecord>> {
        for _ in 0..3 {
            sqlx::query(
                "DELETE FROM idempotency_keys
                 WHERE tenant_id = $1 AND scope = $2 AND idem_key = $3
                   AND (expires_at_ms <= $4 OR (status_code IS NULL AND created_at_ms <= $5))",
            )
            .bind(key.tenant.as_str())
            .bind(key.scope)
            .bind(key.key)
            .bind(ms(now))
            .bind(ms(stale_before))
            .execute(&self.pool)
            .await?;
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (tenant_id, scope, idem_key, request_sha256,
                     created_at_ms, expires_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(key.tenant.as_str())
            .bind(key.scope)
            .bind(key.key)
            .bind(request_sha256)
            .bind(ms(now))
            .bind(ms(expires_at))
            .execute(&self.pool)
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(None);
            }
            let row = sqlx::query(
                "SELECT request_sha256, status_code, response_body FROM idempotency_keys
                 WHERE tenant_id = $1 AND scope = $2 AND idem_key = $3",
            )
            .bind(key.tenant.as_str())
            .bind(key.scope)
            .bind(key.key)
            .fetch_optional(&self.pool)
            .await?;
            // Gone between the insert and the read (released or swept): try again.
            let Some(row) = row else { continue };
            let status: Option<i64> = row.try_get("status_code")?;
            return Ok(Some(IdempotencyRecord {
                request_sha256: row.try_get("request_sha256")?,
                status_code: status.and_then(|s| u16::try_from(s).ok()),
                response_body: row.try_get("response_body")?,
            }));
        }
        Err(crate::DbError::Corrupt(
            "an idempotency key kept changing while it was being reserved".into(),
        ))
    }

    #[tracing::instrument(
        name = "db.idempotency_complete",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn idempotency_complete(
        &self,
        key: &IdempotencyScope<'_>,
        status_code: u16,
        response_body: &str,
    ) -> DbResult<()> {
        sqlx::query(
            "UPDATE idempotency_keys SET status_code = $1, response_body = $2
             WHERE tenant_id = $3 AND scope = $4 AND idem_key = $5",
        )
        .bind(i64::from(status_code))
        .bind(response_body)
        .bind(key.tenant.as_str())
        .bind(key.scope)
        .bind(key.key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(
        name = "db.idempotency_release",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn idempotency_release(&self, key: &IdempotencyScope<'_>) -> DbResult<()> {
        sqlx::query(
            "DELETE FROM idempotency_keys
             WHERE tenant_id = $1 AND scope = $2 AND idem_key = $3 AND status_code IS NULL",
        )
        .bind(key.tenant.as_str())
        .bind(key.scope)
        .bind(key.key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(
        name = "db.idempotency_sweep",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn idempotency_sweep(&self, now: DateTime<Utc>) -> DbResult<u64> {
        let r = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at_ms <= $1")
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    #[tracing::instrument(name = "db.claim_job", level = "debug", skip_all, err(level = "debug"))]
    async fn claim_job(
        &self,
        worker: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> DbResult<Option<Claim>> {
        // A lease that expired on the job's last allowed attempt: the worker died every time.
        // SKIP LOCKED: a row another claimer is taking right now is its business.
        sqlx::query(
            "UPDATE job_logs SET status = 'dead', error_code = 'worker_lost',
                 error_message = 'the worker running the job stopped responding on every attempt',
                 completed_at = $1, lease_owner = NULL, lease_token = NULL,
                 lease_expires_at_ms = NULL, updated_at = $1
             WHERE job_id IN (
                 SELECT job_id FROM job_logs
                 WHERE engine = 'sql' AND status = 'started' AND lease_expires_at_ms < $2
                   AND attempts >= max_attempts
                 FOR UPDATE SKIP LOCKED)",
        )
        .bind(now)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;

        // One statement: lock the oldest due row nobody else has locked, then take it. Under
        // READ COMMITTED a row changed by a claimer that committed meanwhile is re-checked
        // against the WHERE clause before it is locked, so it is never taken twice.
        let token = uuid::Uuid::new_v4().to_string();
        let row = sqlx::query(
            "WITH next AS (
                 SELECT job_id FROM job_logs
                 WHERE engine = 'sql'
                   AND ((status IN ('submitted', 'retrying') AND run_at_ms <= $5)
                        OR (status = 'started' AND lease_expires_at_ms < $5
                            AND attempts < max_attempts))
                 ORDER BY run_at_ms, job_id
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED)
             UPDATE job_logs j SET status = 'started', attempts = j.attempts + 1,
                 lease_owner = $1, lease_token = $2, lease_expires_at_ms = $3,
                 started_at = COALESCE(j.started_at, $4), updated_at = $4
             FROM next WHERE j.job_id = next.job_id
             RETURNING j.*",
        )
        .bind(worker)
        .bind(&token)
        .bind(ms(now + lease))
        .bind(now)
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let job = job_from_row(&row)?;
        Ok(Some(Claim {
            token: ClaimToken {
                job_id: job.job_id,
                token,
            },
            job,
        }))
    }

    #[tracing::instrument(name = "db.heartbeat", level = "debug", skip_all, err(level = "debug"))]
    async fn heartbeat(&self, c: &ClaimToken, until: DateTime<Utc>) -> DbResult<bool> {
        let r = sqlx::query(
            "UPDATE job_logs SET lease_expires_at_ms = $1
             WHERE job_id = $2 AND lease_token = $3 AND status = 'started'",
        )
        .bind(ms(until))
        .bind(c.job_id.to_string())
        .bind(&c.token)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    #[tracing::instrument(
        name = "db.complete_job_with_result",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn complete_job_with_result(
        &self,
        c: &ClaimToken,
        outputs: &[JobOutput],
        result: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> DbResult<bool> {
        let outputs = serde_json::to_string(outputs).map_err(|e| corrupt("outputs", e))?;
        let r = sqlx::query(
            "UPDATE job_logs SET status = 'completed', outputs = $1, completed_at = $2,
                 error_code = NULL, error_message = NULL, lease_owner = NULL, lease_token = NULL,
                 lease_expires_at_ms = NULL, updated_at = $2, result = $5
             WHERE job_id = $3 AND lease_token = $4 AND status = 'started'",
        )
        .bind(outputs)
        .bind(now)
        .bind(c.job_id.to_string())
        .bind(&c.token)
        .bind(result.map(ToString::to_string))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    #[tracing::instrument(name = "db.fail_job", level = "debug", skip_all, err(level = "debug"))]
    async fn fail_job(
        &self,
        c: &ClaimToken,
        f: &Failure,
        now: DateTime<Utc>,
    ) -> DbResult<Option<JobStatus>> {
        // One statement decides retrying/dead/failed from the row's own attempt counters.
        let row = sqlx::query(
            "UPDATE job_logs SET
                 status = CASE WHEN $1::BIGINT IS NULL THEN 'failed'
                               WHEN attempts < max_attempts THEN 'retrying'
                               ELSE 'dead' END,
                 run_at_ms = COALESCE($1::BIGINT, run_at_ms),
                 completed_at = CASE WHEN $1::BIGINT IS NOT NULL AND attempts < max_attempts
                                     THEN NULL ELSE $2 END,
                 error_code = $3, error_message = $4,
                 lease_owner = NULL, lease_token = NULL, lease_expires_at_ms = NULL, updated_at = $2
             WHERE job_id = $5 AND lease_token = $6 AND status = 'started'
             RETURNING status",
        )
        .bind(f.retry_at.map(ms))
        .bind(now)
        .bind(&f.code)
        .bind(&f.message)
        .bind(c.job_id.to_string())
        .bind(&c.token)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let s: String = r.try_get("status")?;
            JobStatus::parse(&s).ok_or_else(|| corrupt("status", s))
        })
        .transpose()
    }

    #[tracing::instrument(
        name = "db.release_job",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn release_job(&self, c: &ClaimToken, now: DateTime<Utc>) -> DbResult<bool> {
        let r = sqlx::query(
            "UPDATE job_logs SET status = 'submitted', attempts = GREATEST(attempts - 1, 0),
                 run_at_ms = $1, lease_owner = NULL, lease_token = NULL,
                 lease_expires_at_ms = NULL, updated_at = $2
             WHERE job_id = $3 AND lease_token = $4 AND status = 'started'",
        )
        .bind(ms(now))
        .bind(now)
        .bind(c.job_id.to_string())
        .bind(&c.token)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    #[tracing::instrument(
        name = "db.start_attempt",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn start_attempt(
        &self,
        id: JobId,
        attempt: u32,
        worker: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> DbResult<Option<Claim>> {
        let token = uuid::Uuid::new_v4().to_string();
        let row = sqlx::query(
            "UPDATE job_logs SET status = 'started', attempts = $1, lease_owner = $2,
                 lease_token = $3, lease_expires_at_ms = $4, started_at = COALESCE(started_at, $5),
                 updated_at = $5
             WHERE job_id = $6 AND engine = 'temporal'
               AND status IN ('submitted', 'started', 'retrying') AND attempts <= $1
             RETURNING *",
        )
        .bind(i64::from(attempt))
        .bind(worker)
        .bind(&token)
        .bind(ms(now + lease))
        .bind(now)
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let job = job_from_row(&row)?;
        Ok(Some(Claim {
            token: ClaimToken {
                job_id: job.job_id,
                token,
            },
            job,
        }))
    }

    #[tracing::instrument(name = "db.mark_dead", level = "debug", skip_all, err(level = "debug"))]
    async fn mark_dead(
        &self,
        id: JobId,
        code: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> DbResult<bool> {
        let r = sqlx::query(
            "UPDATE job_logs SET status = 'dead', error_code = $1, error_message = $2,
                 completed_at = $3, lease_owner = NULL, lease_token = NULL,
                 lease_expires_at_ms = NULL, updated_at = $3
             WHERE job_id = $4 AND status IN ('submitted', 'started', 'retrying')",
        )
        .bind(code)
        .bind(message)
        .bind(now)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    #[tracing::instrument(
        name = "db.undispatched_temporal_jobs",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn undispatched_temporal_jobs(
        &self,
        created_before: DateTime<Utc>,
        limit: u32,
    ) -> DbResult<Vec<Job>> {
        sqlx::query(
            "SELECT * FROM job_logs
             WHERE engine = 'temporal' AND temporal_dispatched_at_ms IS NULL
               AND status IN ('submitted', 'retrying', 'started') AND created_at <= $1
             ORDER BY job_id LIMIT $2",
        )
        .bind(created_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    #[tracing::instrument(
        name = "db.mark_dispatched",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn mark_dispatched(&self, id: JobId, now: DateTime<Utc>) -> DbResult<()> {
        sqlx::query(
            "UPDATE job_logs SET temporal_dispatched_at_ms = $1
             WHERE job_id = $2 AND temporal_dispatched_at_ms IS NULL",
        )
        .bind(ms(now))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(
        name = "db.job_counts",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn job_counts(&self) -> DbResult<Vec<(JobStatus, u64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM job_logs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.try_get("status")?;
                let n: i64 = r.try_get("n")?;
                Ok((
                    JobStatus::parse(&s).ok_or_else(|| corrupt("status", &s))?,
                    n.max(0) as u64,
                ))
            })
            .collect()
    }

    #[tracing::instrument(
        name = "db.queue_stats",
        level = "debug",
        skip_all,
        err(level = "debug")
    )]
    async fn queue_stats(&self) -> DbResult<Vec<QueueStat>> {
        let rows = sqlx::query(
            "SELECT job_type, status, COUNT(*) AS n,
                    MIN(CASE WHEN status IN ('submitted', 'retrying') THEN run_at_ms END) AS oldest
             FROM job_logs WHERE status IN ('submitted', 'retrying', 'started', 'dead')
             GROUP BY job_type, status",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.try_get("status")?;
                let n: i64 = r.try_get("n")?;
                Ok(QueueStat {
                    job_type: r.try_get("job_type")?,
                    status: JobStatus::parse(&s).ok_or_else(|| corrupt("status", &s))?,
                    count: n.max(0) as u64,
                    oldest_run_at_ms: r.try_get("oldest")?,
                })
            })
            .collect()
    }

    async fn wait_for_work(&self, max: Duration) {
        self.wake.ensure_started();
        let _ = tokio::time::timeout(max, self.wake.notify.notified()).await;
    }
}

/// Inserts one job row (queued), in a batch when `batch` is given, and returns it. The `job_logs_notify` trigger
/// wakes listening workers when it commits.
async fn insert_job_row<'c, E>(
    ex: E,
    j: &NewJob,
    now: DateTime<Utc>,
    batch: Option<&str>,
) -> DbResult<Job>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let id = j.job_id.to_string();
    let meta = serde_json::to_string(&j.spec).map_err(|e| corrupt("spec", e))?;
    let row = sqlx::query(
        "INSERT INTO job_logs (id, job_id, job_type, filename, s3_key, content_type,
                 job_metadata, created_at, status, tenant_id, upload_id, attempts, max_attempts,
                 run_at_ms, updated_at, engine, temporal_workflow_id, temporal_task_queue,
                 batch_id, source_url, trace_context)
             VALUES ($1, $1, $2, $3, $4, $5, $6, $7, 'submitted', $8, $9, 0, $10, $11, $7, $12,
                 $13, $14, $15, $16, $17)
             RETURNING *",
    )
    .bind(&id)
    .bind(j.spec.job_type().as_str())
    .bind(&j.filename)
    .bind(j.s3_key.as_ref().map(ObjectKey::as_str))
    .bind(j.content_type.map(ContentType::mime))
    .bind(meta)
    .bind(now)
    .bind(j.tenant.as_str())
    .bind(j.upload_id.map(|u| u.to_string()))
    .bind(i64::from(j.max_attempts))
    .bind(ms(now))
    .bind(crate::engine_of(j).as_str())
    .bind(j.temporal.as_ref().map(|t| t.workflow_id.as_str()))
    .bind(j.temporal.as_ref().map(|t| t.task_queue.as_str()))
    .bind(batch)
    .bind(&j.source_url)
    .bind(crate::submitting_trace())
    .fetch_one(ex)
    .await?;
    job_from_row(&row)
}

fn delivery_from_row(r: &PgRow) -> DbResult<WebhookDelivery> {
    Ok(WebhookDelivery {
        delivery_id: r.try_get("delivery_id")?,
        webhook_id: r.try_get("webhook_id")?,
        event_seq: r.try_get("event_seq")?,
        event_type: r.try_get("event_type")?,
        payload: r.try_get("payload")?,
        status: r.try_get("status")?,
        attempts: r.try_get::<i64, _>("attempts")?.clamp(0, u32::MAX as i64) as u32,
        next_attempt_at: from_ms(r.try_get("next_attempt_at_ms")?),
        last_status_code: r
            .try_get::<Option<i64>, _>("last_status_code")?
            .and_then(|c| u16::try_from(c).ok()),
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
    })
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn accepts_the_three_url_forms() {
        for url in [
            "postgres://u:p@db.example:5433/photos",
            "postgresql://u:p@db.example:5433/photos",
            "postgresql+asyncpg://u:p@db.example:5433/photos",
        ] {
            let o = connect_options(url).unwrap();
            assert_eq!(o.get_host(), "db.example", "{url}");
            assert_eq!(o.get_port(), 5433, "{url}");
            assert_eq!(o.get_username(), "u", "{url}");
            assert_eq!(o.get_database(), Some("photos"), "{url}");
        }
        assert!(connect_options("mysql://x").is_err());
    }
}
