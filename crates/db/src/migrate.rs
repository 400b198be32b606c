//! A small embedded migration runner: versioned up/down scripts compiled into the binary, each
//! applied in its own transaction and recorded in `schema_migrations`.

use sqlx::{PgPool, SqlitePool};

use crate::{DbError, DbResult};

/// One migration.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub up: &'static str,
    pub down: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        up: include_str!("../migrations/sqlite/0001_init.up.sql"),
        down: include_str!("../migrations/sqlite/0001_init.down.sql"),
    },
    Migration {
        version: 2,
        name: "temporal_engine",
        up: include_str!("../migrations/sqlite/0002_temporal_engine.up.sql"),
        down: include_str!("../migrations/sqlite/0002_temporal_engine.down.sql"),
    },
    Migration {
        version: 3,
        name: "files",
        up: include_str!("../migrations/sqlite/0003_files.up.sql"),
        down: include_str!("../migrations/sqlite/0003_files.down.sql"),
    },
    Migration {
        version: 4,
        name: "jobs_depth",
        up: include_str!("../migrations/sqlite/0004_jobs_depth.up.sql"),
        down: include_str!("../migrations/sqlite/0004_jobs_depth.down.sql"),
    },
    Migration {
        version: 5,
        name: "tenants_auth",
        up: include_str!("../migrations/sqlite/0005_tenants_auth.up.sql"),
        down: include_str!("../migrations/sqlite/0005_tenants_auth.down.sql"),
    },
    Migration {
        version: 6,
        name: "tenants",
        up: include_str!("../migrations/sqlite/0006_tenants.up.sql"),
        down: include_str!("../migrations/sqlite/0006_tenants.down.sql"),
    },
    Migration {
        version: 7,
        name: "job_kinds_presets_batch_events",
        up: include_str!("../migrations/sqlite/0007_job_kinds_presets_batch_events.up.sql"),
        down: include_str!("../migrations/sqlite/0007_job_kinds_presets_batch_events.down.sql"),
    },
    Migration {
        version: 8,
        name: "trace_context",
        up: include_str!("../migrations/sqlite/0008_trace_context.up.sql"),
        down: include_str!("../migrations/sqlite/0008_trace_context.down.sql"),
    },
];

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        up: include_str!("../migrations/postgres/0001_init.up.sql"),
        down: include_str!("../migrations/postgres/0001_init.down.sql"),
    },
    Migration {
        version: 2,
        name: "temporal_engine",
        up: include_str!("../migrations/postgres/0002_temporal_engine.up.sql"),
        down: include_str!("../migrations/postgres/0002_temporal_engine.down.sql"),
    },
    Migration {
        version: 3,
        name: "files",
        up: include_str!("../migrations/postgres/0003_files.up.sql"),
        down: include_str!("../migrations/postgres/0003_files.down.sql"),
    },
    Migration {
        version: 4,
        name: "jobs_depth",
        up: include_str!("../migrations/postgres/0004_jobs_depth.up.sql"),
        down: include_str!("../migrations/postgres/0004_jobs_depth.down.sql"),
    },
    Migration {
        version: 5,
        name: "tenants_auth",
        up: include_str!("../migrations/postgres/0005_tenants_auth.up.sql"),
        down: include_str!("../migrations/postgres/0005_tenants_auth.down.sql"),
    },
    Migration {
        version: 6,
        name: "tenants",
        up: include_str!("../migrations/postgres/0006_tenants.up.sql"),
        down: include_str!("../migrations/postgres/0006_tenants.down.sql"),
    },
    Migration {
        version: 7,
        name: "job_kinds_presets_batch_events",
        up: include_str!("../migrations/postgres/0007_job_kinds_presets_batch_events.up.sql"),
        down: include_str!("../migrations/postgres/0007_job_kinds_presets_batch_events.down.sql"),
    },
    Migration {
        version: 8,
        name: "trace_context",
        up: include_str!("../migrations/postgres/0008_trace_context.up.sql"),
        down: include_str!("../migrations/postgres/0008_trace_context.down.sql"),
    },
];

/// The newest schema version of a migration list (names the test template database).
pub(crate) fn latest(migrations: &[Migration]) -> i64 {
    migrations.iter().map(|m| m.version).max().unwrap_or(0)
}

async fn applied(pool: &SqlitePool) -> DbResult<Vec<i64>> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .execute(pool)
    .await?;
    Ok(
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(pool)
            .await?,
    )
}

/// Applies every pending migration; returns how many ran.
pub(crate) async fn up(pool: &SqlitePool, migrations: &[Migration]) -> DbResult<usize> {
    let done = applied(pool).await?;
    let mut ran = 0;
    for m in migrations.iter().filter(|m| !done.contains(&m.version)) {
        let fail = |source| DbError::Migration {
            version: m.version,
            source,
        };
        // IMMEDIATE takes the write lock up front, so processes opening a fresh file together
        // run each migration once; the re-check skips one another process just applied.
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let already: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations WHERE version = ?")
                .bind(m.version)
                .fetch_one(&mut *tx)
                .await?;
        if already > 0 {
            continue;
        }
        sqlx::raw_sql(m.up).execute(&mut *tx).await.map_err(fail)?;
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
            .bind(m.version)
            .bind(m.name)
            .bind(chrono::Utc::now().to_rfc3339())
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        ran += 1;
    }
    Ok(ran)
}

/// Reverts the newest `steps` applied migrations; returns how many were reverted.
pub(crate) async fn down(
    pool: &SqlitePool,
    migrations: &[Migration],
    steps: usize,
) -> DbResult<usize> {
    let done = applied(pool).await?;
    let mut reverted = 0;
    for version in done.iter().rev().take(steps) {
        let Some(m) = migrations.iter().find(|m| m.version == *version) else {
            return Err(DbError::Corrupt(format!(
                "unknown applied migration {version}"
            )));
        };
        let fail = |source| DbError::Migration {
            version: m.version,
            source,
        };
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(m.down)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        sqlx::query("DELETE FROM schema_migrations WHERE version = ?")
            .bind(m.version)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        reverted += 1;
    }
    Ok(reverted)
}

/// Key of the PostgreSQL advisory lock that serialises migrations across processes
/// ("photo-mg" in ASCII). Transaction-scoped, so a crashed migrator cannot leave it held.
const PG_LOCK: i64 = 0x7068_6f74_6f2d_6d67;

const PG_TABLE: &str = "CREATE TABLE schema_migrations (
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())";

/// Opens a transaction holding the migration lock, with `schema_migrations` present; returns it
/// and the applied versions, ascending.
async fn pg_locked(
    pool: &PgPool,
) -> DbResult<(sqlx::Transaction<'static, sqlx::Postgres>, Vec<i64>)> {
    let mut tx = pool.begin().await?;
    // Waits for any other process migrating the same database. Migrations may legitimately
    // take longer than the pool's statement timeout.
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PG_LOCK)
        .execute(&mut *tx)
        .await?;
    // Checked first (under the lock) rather than IF NOT EXISTS, which logs a notice each start.
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('schema_migrations') IS NOT NULL")
        .fetch_one(&mut *tx)
        .await?;
    if !exists {
        sqlx::raw_sql(PG_TABLE).execute(&mut *tx).await?;
    }
    let done = sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *tx)
        .await?;
    Ok((tx, done))
}

/// Applies every pending PostgreSQL migration, each in its own transaction under the advisory
/// lock, so processes starting together run each migration once; returns how many ran.
pub(crate) async fn pg_up(pool: &PgPool, migrations: &[Migration]) -> DbResult<usize> {
    let mut ran = 0;
    for m in migrations {
        let fail = |source| DbError::Migration {
            version: m.version,
            source,
        };
        let (mut tx, done) = pg_locked(pool).await?;
        if done.contains(&m.version) {
            continue;
        }
        sqlx::raw_sql(m.up).execute(&mut *tx).await.map_err(fail)?;
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(m.version)
            .bind(m.name)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        ran += 1;
    }
    Ok(ran)
}

/// Reverts the newest `steps` applied PostgreSQL migrations; returns how many were reverted.
pub(crate) async fn pg_down(
    pool: &PgPool,
    migrations: &[Migration],
    steps: usize,
) -> DbResult<usize> {
    let mut reverted = 0;
    for _ in 0..steps {
        let (mut tx, done) = pg_locked(pool).await?;
        let Some(version) = done.last().copied() else {
            break;
        };
        let Some(m) = migrations.iter().find(|m| m.version == version) else {
            return Err(DbError::Corrupt(format!(
                "unknown applied migration {version}"
            )));
        };
        let fail = |source| DbError::Migration {
            version: m.version,
            source,
        };
        sqlx::raw_sql(m.down)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        sqlx::query("DELETE FROM schema_migrations WHERE version = $1")
            .bind(m.version)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        tracing::info!(version = m.version, name = m.name, "reverted migration");
        reverted += 1;
    }
    Ok(reverted)
}
