//! Building the adapters from the configuration.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use photo_db::Repo;
use photo_storage::{LocalStore, ObjectStore, S3Config, S3Credentials, S3Store, UrlSigner};

use crate::config::Config;

/// Opens the database named by the configuration (SQLite or PostgreSQL, by the URL's scheme),
/// running migrations.
pub async fn open_repo(cfg: &Config) -> anyhow::Result<Arc<dyn Repo>> {
    ensure_data_dir(cfg)?;
    photo_db::open(&cfg.database_url, &cfg.db_options())
        .await
        .with_context(|| format!("opening the database {}", redact_url(&cfg.database_url)))
}

/// Creates the data directory: it holds the SQLite file and, whatever the database, the local
/// objects and the generated signing key.
pub fn ensure_data_dir(cfg: &Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))
}

/// A database URL fit for messages: any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The URL-signing secret: configured, or generated once into the data directory (0600).
pub fn signer(cfg: &Config) -> anyhow::Result<UrlSigner> {
    if let Some(k) = &cfg.signing_key {
        if k.len() < 32 {
            anyhow::bail!("PHOTO_API_SIGNING_KEY must be at least 32 characters");
        }
        return Ok(UrlSigner::new(k.as_bytes().to_vec()));
    }
    let path = cfg.data_dir.join("signing.key");
    Ok(UrlSigner::new(load_or_create_secret(&path)?))
}

fn load_or_create_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(hex::encode(secret).as_bytes())?;
            f.sync_all()?;
            Ok(hex::encode(secret).into_bytes())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let text = text.trim();
            if text.len() < 32 {
                anyhow::bail!(
                    "{} is too short; delete it to generate a new one",
                    path.display()
                );
            }
            Ok(text.as_bytes().to_vec())
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// The configured object store: S3 when `S3_BUCKET_RAW`/`S3_BUCKET_PROCESSED` are set (both
/// buckets checked now, so a wrong name or credential fails start-up with a clear message),
/// else the local directory. `public_url` is where the local store's signed URLs point.
/// Every call is timed and traced ([`photo_storage::Metered`]).
pub async fn open_store(cfg: &Config, public_url: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let store: Arc<dyn ObjectStore> = match &cfg.s3 {
        None => Arc::new(local_store(cfg, public_url).await?),
        Some(_) => {
            let store = s3_store(cfg).await?;
            store
                .health()
                .await
                .context("checking the S3 buckets (run `photo-api setup` to create them)")?;
            Arc::new(store)
        }
    };
    Ok(photo_storage::Metered::wrap(store))
}

/// The S3 store of the configuration, without checking the buckets.
pub async fn s3_store(cfg: &Config) -> anyhow::Result<S3Store> {
    let s3 = cfg
        .s3
        .as_ref()
        .context("S3 is not configured: set S3_BUCKET_RAW and S3_BUCKET_PROCESSED")?;
    let mut c = S3Config::new(&s3.bucket_raw, &s3.bucket_processed, &s3.region);
    c.endpoint = s3.endpoint.clone();
    c.path_style = s3.path_style;
    c.allow_http = s3
        .endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    c.credentials = S3Credentials::Chain;
    S3Store::connect(c)
        .await
        .context("connecting to S3 (credentials come from the standard AWS chain)")
}

/// The local object store under `<data_dir>/objects`.
pub async fn local_store(cfg: &Config, public_url: &str) -> anyhow::Result<LocalStore> {
    let root = cfg.data_dir.join("objects");
    LocalStore::open(&root, public_url, signer(cfg)?)
        .await
        .with_context(|| format!("opening the object directory {}", root.display()))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://photo:s3cret@db:5432/photos"),
            "postgres://photo:***@db:5432/photos"
        );
        assert_eq!(
            redact_url("postgres://photo@db/photos"),
            "postgres://photo@db/photos"
        );
        assert_eq!(
            redact_url("sqlite://./data/photo-api.db"),
            "sqlite://./data/photo-api.db"
        );
    }
}
