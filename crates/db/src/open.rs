//! Choosing the database by the URL's scheme.

use std::sync::Arc;

use crate::{DbResult, PgOptions, PgRepo, Repo, SqliteRepo};

/// A connected database of either kind, before it is handed out as a [`Repo`]; what
/// `photo-api migrate` works on.
#[derive(Debug, Clone)]
pub enum Database {
    /// The embedded SQLite file.
    Sqlite(SqliteRepo),
    /// A PostgreSQL server.
    Postgres(PgRepo),
}

impl Database {
    /// Applies pending migrations; returns how many ran.
    pub async fn migrate(&self) -> DbResult<usize> {
        match self {
            Self::Sqlite(r) => r.migrate().await,
            Self::Postgres(r) => r.migrate().await,
        }
    }

    /// Reverts the newest `steps` migrations; returns how many were reverted.
    pub async fn migrate_down(&self, steps: usize) -> DbResult<usize> {
        match self {
            Self::Sqlite(r) => r.migrate_down(steps).await,
            Self::Postgres(r) => r.migrate_down(steps).await,
        }
    }

    /// The repository.
    pub fn into_repo(self) -> Arc<dyn Repo> {
        match self {
            Self::Sqlite(r) => Arc::new(r),
            Self::Postgres(r) => Arc::new(r),
        }
    }
}

/// Whether `url` names a PostgreSQL database (`postgres://`, `postgresql://` or the design
/// documents' `postgresql+asyncpg://`).
pub fn is_postgres_url(url: &str) -> bool {
    ["postgres://", "postgresql://", "postgresql+asyncpg://"]
        .iter()
        .any(|p| url.starts_with(p))
}

/// Connects to the database `url` names — PostgreSQL for `postgres://`, `postgresql://` and
/// `postgresql+asyncpg://`, otherwise a SQLite file (`sqlite://path`, `sqlite:path`) — without
/// migrating. `opts` apply to PostgreSQL; the SQLite file's own settings are fixed.
pub async fn connect(url: &str, opts: &PgOptions) -> DbResult<Database> {
    if is_postgres_url(url) {
        Ok(Database::Postgres(PgRepo::connect_url(url, opts).await?))
    } else {
        Ok(Database::Sqlite(SqliteRepo::connect_url(url).await?))
    }
}

/// [`connect`], then runs pending migrations: what the service does on start-up.
pub async fn open(url: &str, opts: &PgOptions) -> DbResult<Arc<dyn Repo>> {
    let db = connect(url, opts).await?;
    db.migrate().await?;
    Ok(match db {
        // See `SqliteRepo::fresh_pool`: no connection that saw the schema mid-migration.
        Database::Sqlite(r) => Arc::new(r.fresh_pool().await?),
        Database::Postgres(r) => Arc::new(r),
    })
}
