//! A database per test, of either kind: a fresh SQLite file, or a PostgreSQL database cloned
//! from a migrated template. The PostgreSQL server comes from `PHOTO_API_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`, a role allowed to create databases);
//! when it cannot be reached the PostgreSQL tests fail, saying so — `scripts/test.sh` starts one.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use photo_db::{Database, PgOptions, PgRepo, Repo, SqliteRepo};
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;

/// The admin URL of the test server.
pub fn admin_url() -> String {
    std::env::var("PHOTO_API_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` with its database name replaced.
pub fn url_with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

pub async fn admin() -> PgConnection {
    let url = admin_url();
    match PgConnection::connect(&url).await {
        Ok(c) => c,
        Err(e) => panic!(
            "the PostgreSQL tests need a server at {url} (set PHOTO_API_TEST_POSTGRES, or run \
             scripts/ensure-postgres.sh, which scripts/test.sh calls): {e}"
        ),
    }
}

/// Pool settings of test repositories: small, quick to give up.
pub fn pg_opts() -> PgOptions {
    PgOptions {
        max_connections: 16,
        acquire_timeout: Duration::from_secs(10),
        statement_timeout: Duration::from_secs(30),
    }
}

/// Serialises template creation across test processes (nextest runs one per test).
const TEMPLATE_LOCK: i64 = 0x7068_6f74_6f2d_746d;

/// The migrated template database, created once per schema: its name carries the schema version
/// and a hash of the migration text, so a changed migration gets a new template.
async fn template() -> String {
    static NAME: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    NAME.get_or_init(|| async {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        include_str!("../../migrations/postgres/0001_init.up.sql").hash(&mut h);
        include_str!("../../migrations/postgres/0001_init.down.sql").hash(&mut h);
        include_str!("../../migrations/postgres/0002_temporal_engine.up.sql").hash(&mut h);
        include_str!("../../migrations/postgres/0002_temporal_engine.down.sql").hash(&mut h);
        include_str!("../../migrations/postgres/0003_files.up.sql").hash(&mut h);
        include_str!("../../migrations/postgres/0003_files.down.sql").hash(&mut h);
        include_str!("../../migrations/postgres/0005_tenants_auth.up.sql").hash(&mut h);
        include_str!("../../migrations/postgres/0005_tenants_auth.down.sql").hash(&mut h);
        include_str!("../../migrations/postgres/0004_jobs_depth.up.sql").hash(&mut h);
        include_str!("../../migrations/postgres/0004_jobs_depth.down.sql").hash(&mut h);
        include_str!("../../migrations/postgres/0006_tenants.up.sql").hash(&mut h);
        include_str!("../../migrations/postgres/0006_tenants.down.sql").hash(&mut h);
        include_str!("../../migrations/postgres/0008_trace_context.up.sql").hash(&mut h);
        include_str!("../../migrations/postgres/0008_trace_context.down.sql").hash(&mut h);
        include_str!("../../migrations/postgres/0007_job_kinds_presets_batch_events.up.sql")
            .hash(&mut h);
        include_str!("../../migrations/postgres/0007_job_kinds_presets_batch_events.down.sql")
            .hash(&mut h);
        let name = format!(
            "photo_tmpl_v{}_{:016x}",
            PgRepo::schema_version(),
            h.finish()
        );
        let mut admin = admin().await;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(TEMPLATE_LOCK)
            .execute(&mut admin)
            .await
            .unwrap();
        let ready: Option<bool> =
            sqlx::query_scalar("SELECT datistemplate FROM pg_database WHERE datname = $1")
                .bind(&name)
                .fetch_optional(&mut admin)
                .await
                .unwrap();
        if ready != Some(true) {
            // Absent, or left half-made by a crashed run.
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
            sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut admin)
                .await
                .unwrap();
            let repo = PgRepo::open_url(&url_with_db(&admin_url(), &name), &pg_opts())
                .await
                .unwrap();
            repo.close().await;
            sqlx::raw_sql(&format!("ALTER DATABASE \"{name}\" IS_TEMPLATE true"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(TEMPLATE_LOCK)
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        name
    })
    .await
    .clone()
}

/// A new, empty PostgreSQL database; dropped when the guard is.
pub async fn blank_pg(template: Option<&str>) -> PgDb {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = admin().await;
    let sql = match template {
        Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
        None => format!("CREATE DATABASE \"{name}\""),
    };
    sqlx::raw_sql(&sql).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    PgDb {
        url: url_with_db(&admin_url(), &name),
        name,
    }
}

/// A test's PostgreSQL database; dropped (connections and all) at the end, pass or fail.
#[derive(Debug)]
pub struct PgDb {
    pub name: String,
    pub url: String,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&admin_url()).await {
                    let _ =
                        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut c)
                            .await;
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}

/// Which database a test runs on.
#[derive(Debug)]
pub enum Kind {
    Sqlite { _dir: TempDir, path: PathBuf },
    Postgres(PgDb),
}

/// One test's database and its repository.
#[derive(Debug)]
pub struct TestDb {
    pub kind: Kind,
    pub db: Database,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("photo.db");
        let repo = SqliteRepo::open(&path).await.unwrap();
        Self {
            kind: Kind::Sqlite { _dir: dir, path },
            db: Database::Sqlite(repo),
        }
    }

    pub async fn postgres() -> Self {
        let tmpl = template().await;
        let pg = blank_pg(Some(&tmpl)).await;
        let repo = PgRepo::connect_url(&pg.url, &pg_opts()).await.unwrap();
        Self {
            kind: Kind::Postgres(pg),
            db: Database::Postgres(repo),
        }
    }

    pub fn url(&self) -> String {
        match &self.kind {
            Kind::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Kind::Postgres(pg) => pg.url.clone(),
        }
    }

    /// The repository under test.
    pub fn repo(&self) -> Arc<dyn Repo> {
        self.db.clone().into_repo()
    }

    /// A second, independent connection pool on the same database, like another process.
    pub async fn reopen(&self) -> Database {
        let db = photo_db::connect(&self.url(), &pg_opts()).await.unwrap();
        db.migrate().await.unwrap();
        db
    }

    /// A new, unmigrated database of the same kind: its guard and URL.
    pub async fn blank(&self) -> (Blank, String) {
        match &self.kind {
            Kind::Sqlite { .. } => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("photo.db");
                // The file exists, in WAL mode, but is not migrated. (Four connections switching
                // a brand-new file to WAL at once can get SQLITE_BUSY from the journal-mode
                // pragma; that startup race is a different matter from the migration race.)
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
                sqlx::SqlitePool::connect_with(opts)
                    .await
                    .unwrap()
                    .close()
                    .await;
                let url = format!("sqlite://{}", path.display());
                (Blank::Sqlite(dir), url)
            }
            Kind::Postgres(_) => {
                let pg = blank_pg(None).await;
                let url = pg.url.clone();
                (Blank::Postgres(pg), url)
            }
        }
    }

    pub async fn table_exists_in(db: &Database, name: &str) -> bool {
        let sql = match db {
            Database::Sqlite(_) => format!(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{name}'"
            ),
            Database::Postgres(_) => format!(
                "SELECT COUNT(*) FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = '{name}'"
            ),
        };
        scalar(db, &sql).await == 1
    }

    pub async fn table_exists(&self, name: &str) -> bool {
        Self::table_exists_in(&self.db, name).await
    }

    pub async fn columns(&self, table: &str) -> Vec<String> {
        match &self.db {
            Database::Sqlite(r) => {
                sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .fetch_all(r.pool())
                    .await
                    .unwrap()
            }
            Database::Postgres(r) => sqlx::query_scalar(
                "SELECT column_name::TEXT FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1",
            )
            .bind(table)
            .fetch_all(r.pool())
            .await
            .unwrap(),
        }
    }

    /// Closes the pools (SQLite files are removed with the directory; PostgreSQL databases are
    /// dropped by [`PgDb`]'s guard).
    pub async fn finish(self) {
        if let Database::Postgres(r) = &self.db {
            r.close().await;
        }
    }
}

/// An unmigrated database's guard: the file's directory or the PostgreSQL database.
#[derive(Debug)]
pub enum Blank {
    Sqlite(#[expect(dead_code, reason = "held until the test ends")] TempDir),
    Postgres(#[expect(dead_code, reason = "held until the test ends")] PgDb),
}

/// One integer from a query.
pub async fn scalar(db: &Database, sql: &str) -> i64 {
    match db {
        Database::Sqlite(r) => sqlx::query_scalar(sql).fetch_one(r.pool()).await.unwrap(),
        Database::Postgres(r) => sqlx::query_scalar(sql).fetch_one(r.pool()).await.unwrap(),
    }
}

/// Generates `sqlite::name` and `postgres::name` from each `async fn name(db: &TestDb)`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = $crate::common::TestDb::sqlite().await;
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = $crate::common::TestDb::postgres().await;
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}
