//! Layered configuration: defaults → config file → environment → command-line flags.
//!
//! Every setting is an `Option` in [`Settings`], which clap fills from flags and env vars and
//! serde fills from the TOML file; [`Settings::resolve`] merges them (flag/env beats file) and
//! applies defaults, producing a typed [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use photo_core::ByteSize;
use serde::{Deserialize, Serialize};

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!(
            "{other:?} is not a boolean (use true/false, 1/0, yes/no)"
        )),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 5m, 48h)"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
/// Where `serve` runs workers.
pub enum WorkerMode {
    /// A supervised child process (default): a codec crash costs one attempt, never the API.
    Process,
    /// Tasks inside the API process.
    InProcess,
    /// None; run `photo-api worker` elsewhere.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
/// Log output format.
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
/// OTLP transport of traces.
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies (port 4318 on a collector).
    #[value(name = "http/protobuf")]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    #[value(name = "http/json")]
    #[serde(rename = "http/json")]
    HttpJson,
}

/// Every setting; each has a flag, an env var and a config-file key (the field name).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, global = true, env = "PHOTO_API_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Base URL clients use to reach this server (for signed URLs); default http://<listen>.
    #[arg(long, global = true, env = "PHOTO_API_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Directory for the SQLite database, objects and the signing key.
    #[arg(long, global = true, env = "PHOTO_API_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL; default sqlite://<data_dir>/photo-api.db.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Most PostgreSQL connections per process (default 10).
    #[arg(long, global = true, env = "PHOTO_API_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// PostgreSQL statement timeout (default 30s).
    #[arg(long, global = true, env = "PHOTO_API_DB_STATEMENT_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub db_statement_timeout: Option<Duration>,
    /// Bootstrap admin API key (otherwise one is generated on first start).
    #[arg(long, global = true, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Secret for signed URLs; default: generated once into <data_dir>/signing.key.
    #[arg(
        long,
        global = true,
        env = "PHOTO_API_SIGNING_KEY",
        hide_env_values = true
    )]
    pub signing_key: Option<String>,
    /// Lifetime of upload URLs, seconds (default 300).
    #[arg(long, global = true, env = "PRESIGN_EXPIRES_SECONDS")]
    pub presign_expires_seconds: Option<u64>,
    /// Largest upload (default 25000000; units like 25MB accepted).
    #[arg(long, global = true, env = "MAX_UPLOAD_SIZE")]
    pub max_upload_size: Option<ByteSize>,
    /// How long raw uploads are kept (default 48h).
    #[arg(long, global = true, env = "PHOTO_API_RAW_TTL", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub raw_ttl: Option<Duration>,
    /// How often `serve` sweeps expired uploads (default 5m).
    #[arg(long, global = true, env = "PHOTO_API_SWEEP_INTERVAL", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub sweep_interval: Option<Duration>,
    /// Age after which staging leftovers of interrupted writes are swept (default 1h).
    #[arg(long, global = true, env = "PHOTO_API_STAGING_MAX_AGE", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub staging_max_age: Option<Duration>,
    /// How long responses to requests with an `Idempotency-Key` are kept for replay (default 24h).
    #[arg(long, global = true, env = "PHOTO_API_IDEMPOTENCY_TTL", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub idempotency_ttl: Option<Duration>,
    /// Most items in one `POST /batches` (default 1000, at most 10000).
    #[arg(long, global = true, env = "PHOTO_API_MAX_BATCH_SIZE")]
    pub max_batch_size: Option<usize>,
    /// Serve `GET /metrics` on a listener of its own at this address instead of the main one
    /// (`photo-api worker` serves its metrics only there).
    #[arg(long, global = true, env = "PHOTO_API_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// OTLP endpoint traces are exported to, e.g. http://collector:4318 (`/v1/traces` is
    /// appended); tracing is off when unset.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// OTLP transport: http/protobuf (default) or http/json.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_enum)]
    pub otlp_protocol: Option<OtlpProtocol>,
    /// Presets: jobs queued when an upload completes ready. A JSON object of preset name →
    /// list of `{"job_type", "params"}` (1 to 8 jobs, as for `POST /jobs`), e.g.
    /// `{"web": [{"job_type": "variants", "params": {"variants": [{"name": "small", "width":
    /// 320}]}}]}`. An upload picks one with `preset` at `POST /uploads/init` (default none).
    #[arg(long, global = true, env = "PHOTO_API_PRESETS")]
    pub presets: Option<String>,
    /// The preset queued for uploads whose init names neither `preset` nor `jobs` (default
    /// none).
    #[arg(long, global = true, env = "PHOTO_API_DEFAULT_PRESET")]
    pub default_preset: Option<String>,
    /// First retry delay of a failed webhook delivery, doubled per attempt up to 1h (default 5s).
    #[arg(long, global = true, env = "PHOTO_API_WEBHOOK_RETRY_BASE", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub webhook_retry_base: Option<Duration>,
    /// Attempts of a webhook delivery before it is given up (default 20: about 11 hours).
    #[arg(long, global = true, env = "PHOTO_API_WEBHOOK_MAX_ATTEMPTS")]
    pub webhook_max_attempts: Option<u32>,
    /// Time limit of one webhook delivery attempt (default 10s).
    #[arg(long, global = true, env = "PHOTO_API_WEBHOOK_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub webhook_timeout: Option<Duration>,
    /// Time limit of fetching a job's `source_url`, redirects included (default 30s).
    #[arg(long, global = true, env = "PHOTO_API_SOURCE_URL_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub source_url_timeout: Option<Duration>,
    /// Most redirects followed when fetching a `source_url` (default 3, at most 10).
    #[arg(long, global = true, env = "PHOTO_API_SOURCE_URL_MAX_REDIRECTS")]
    pub source_url_max_redirects: Option<u32>,
    /// Comma-separated address blocks (CIDR) a `source_url` may reach although they are not
    /// public (loopback, private, link-local…); default none.
    #[arg(long, global = true, env = "PHOTO_API_SOURCE_URL_ALLOW")]
    pub source_url_allow: Option<String>,
    /// How long finished jobs (and their outputs) are kept before the sweep deletes them
    /// (default: kept).
    #[arg(long, global = true, env = "PHOTO_API_JOB_TTL", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub job_ttl: Option<Duration>,
    /// Lifetime of signed download URLs (default 1h).
    #[arg(long, global = true, env = "PHOTO_API_DOWNLOAD_URL_TTL", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub download_url_ttl: Option<Duration>,
    /// Largest file of the file API (default: MAX_UPLOAD_SIZE; units like 2GB accepted).
    #[arg(long, global = true, env = "PHOTO_API_FILES_MAX_SIZE")]
    pub files_max_size: Option<ByteSize>,
    /// Largest body of one `POST /files/upload-multiple` (default 1GB).
    #[arg(long, global = true, env = "PHOTO_API_FILES_MAX_REQUEST_SIZE")]
    pub files_max_request_size: Option<ByteSize>,
    /// Most files in one `POST /files/upload-multiple` (default 100).
    #[arg(long, global = true, env = "PHOTO_API_FILES_MAX_PER_REQUEST")]
    pub files_max_per_request: Option<usize>,
    /// Most entries one copy or move of a folder may touch (default 10000).
    #[arg(long, global = true, env = "PHOTO_API_FILES_MAX_TREE_ENTRIES")]
    pub files_max_tree_entries: Option<u64>,
    /// How long the bytes of a deleted or replaced file are kept before the sweeper removes
    /// them, so downloads in flight finish (default 1h).
    #[arg(long, global = true, env = "PHOTO_API_FILES_GC_DELAY", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub files_gc_delay: Option<Duration>,
    /// Longest lifetime of a presigned file URL (default 7d, S3's own maximum).
    #[arg(long, global = true, env = "PHOTO_API_FILES_MAX_URL_TTL", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub files_max_url_ttl: Option<Duration>,
    /// Largest image in pixels (default 100000000).
    #[arg(long, global = true, env = "PHOTO_API_MAX_PIXELS")]
    pub max_pixels: Option<u64>,
    /// Largest image side in pixels (default 16384).
    #[arg(long, global = true, env = "PHOTO_API_MAX_SIDE")]
    pub max_side: Option<u32>,
    /// Where `serve` runs workers (default process).
    #[arg(long, global = true, env = "PHOTO_API_WORKER_MODE", value_enum)]
    pub worker_mode: Option<WorkerMode>,
    /// Jobs run at once per worker process (default: number of CPUs).
    #[arg(long, global = true, env = "PHOTO_API_WORKER_CONCURRENCY")]
    pub worker_concurrency: Option<usize>,
    /// Job lease; a worker silent for this long loses its job (default 30s).
    #[arg(long, global = true, env = "PHOTO_API_JOB_LEASE", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub job_lease: Option<Duration>,
    /// Time limit of one job attempt (default 120s).
    #[arg(long, global = true, env = "PHOTO_API_JOB_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub job_timeout: Option<Duration>,
    /// Attempts before a job is dead (default 3).
    #[arg(long, global = true, env = "PHOTO_API_MAX_ATTEMPTS")]
    pub max_attempts: Option<u32>,
    /// First retry delay, doubled per attempt, with jitter (default 2s).
    #[arg(long, global = true, env = "PHOTO_API_RETRY_BACKOFF", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub retry_backoff: Option<Duration>,
    /// Idle poll interval of workers (default 250ms).
    #[arg(long, global = true, env = "PHOTO_API_POLL_INTERVAL", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub poll_interval: Option<Duration>,
    /// Timeout of ordinary requests (default 30s).
    #[arg(long, global = true, env = "PHOTO_API_REQUEST_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub request_timeout: Option<Duration>,
    /// How long shutdown waits for running jobs before releasing them (default 20s).
    #[arg(long, global = true, env = "PHOTO_API_SHUTDOWN_GRACE", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub shutdown_grace: Option<Duration>,
    /// Log level or filter (default info).
    #[arg(long, global = true, env = "LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format (default text).
    #[arg(long, global = true, env = "PHOTO_API_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Debug logging (same as LOG_LEVEL=debug); accepts true/false/1/0/yes/no.
    #[arg(long, global = true, env = "DEBUG", value_parser = parse_bool)]
    pub debug: Option<bool>,
    /// S3 bucket for raw uploads; setting it (with S3_BUCKET_PROCESSED) switches storage to S3.
    #[arg(long, global = true, env = "S3_BUCKET_RAW")]
    pub s3_bucket_raw: Option<String>,
    /// S3 bucket for processed outputs.
    #[arg(long, global = true, env = "S3_BUCKET_PROCESSED")]
    pub s3_bucket_processed: Option<String>,
    /// AWS region of the buckets (default us-east-1).
    #[arg(long, global = true, env = "AWS_REGION")]
    pub aws_region: Option<String>,
    /// Endpoint of a non-AWS S3-compatible server, e.g. http://127.0.0.1:9000.
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<String>,
    /// Path-style bucket addressing (default: on when an endpoint is set, off on AWS).
    #[arg(long, global = true, env = "PHOTO_API_S3_PATH_STYLE", value_parser = parse_bool)]
    pub s3_path_style: Option<bool>,
    /// Temporal frontend (host:port); setting it runs every new job as a Temporal workflow.
    #[arg(long, global = true, env = "TEMPORAL_TARGET")]
    pub temporal_target: Option<String>,
    /// Temporal namespace (default `default`).
    #[arg(long, global = true, env = "TEMPORAL_NAMESPACE")]
    pub temporal_namespace: Option<String>,
    /// Task queue of job workflows and activities (default `image-tasks`).
    #[arg(long, global = true, env = "TEMPORAL_TASK_QUEUE")]
    pub temporal_task_queue: Option<String>,
    /// mTLS client certificate (PEM file) for Temporal, e.g. Temporal Cloud's.
    #[arg(long, global = true, env = "PHOTO_API_TEMPORAL_TLS_CERT")]
    pub temporal_tls_cert: Option<PathBuf>,
    /// The private key (PEM file) of the mTLS client certificate.
    #[arg(long, global = true, env = "PHOTO_API_TEMPORAL_TLS_KEY")]
    pub temporal_tls_key: Option<PathBuf>,
    /// CA bundle (PEM file) to verify the Temporal server with (default: system roots).
    #[arg(long, global = true, env = "PHOTO_API_TEMPORAL_TLS_CA")]
    pub temporal_tls_ca: Option<PathBuf>,
    /// Name to verify the Temporal server's certificate against (default: the target's host).
    #[arg(long, global = true, env = "PHOTO_API_TEMPORAL_TLS_SERVER_NAME")]
    pub temporal_tls_server_name: Option<String>,
    /// Temporal Cloud API key (turns TLS on).
    #[arg(
        long,
        global = true,
        env = "TEMPORAL_API_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub temporal_api_key: Option<String>,
    /// Shared secret of HS256 bearer tokens (at least 32 characters).
    #[arg(
        long,
        global = true,
        env = "PHOTO_API_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// JWKS URL of RS256/ES256 bearer tokens (e.g. Supabase's or Auth0's .well-known/jwks.json).
    #[arg(long, global = true, env = "PHOTO_API_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// Required `iss` of bearer tokens.
    #[arg(long, global = true, env = "PHOTO_API_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Accepted `aud` values of bearer tokens, comma-separated.
    #[arg(long, global = true, env = "PHOTO_API_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Claim (dotted path) naming the token's tenant (default tenant_id).
    #[arg(long, global = true, env = "PHOTO_API_JWT_TENANT_CLAIM")]
    pub jwt_tenant_claim: Option<String>,
    /// Claim (dotted path) holding the token's scopes (default scope).
    #[arg(long, global = true, env = "PHOTO_API_JWT_SCOPE_CLAIM")]
    pub jwt_scope_claim: Option<String>,
    /// Scopes of tokens that carry none of ours (default read,write).
    #[arg(long, global = true, env = "PHOTO_API_JWT_DEFAULT_SCOPES")]
    pub jwt_default_scopes: Option<String>,
    /// Accepted values of the token's `role` claim, comma-separated (default: any).
    #[arg(long, global = true, env = "PHOTO_API_JWT_ALLOWED_ROLES")]
    pub jwt_allowed_roles: Option<String>,
    /// How long fetched JWKS keys are used before fetching again (default 10m).
    #[arg(long, global = true, env = "PHOTO_API_JWKS_CACHE_TTL", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub jwks_cache_ttl: Option<Duration>,
    /// Least time between JWKS fetches caused by unknown key ids (default 10s).
    #[arg(long, global = true, env = "PHOTO_API_JWKS_MIN_REFRESH", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub jwks_min_refresh: Option<Duration>,
    /// Browser origins allowed by CORS, comma-separated and exact (`*`: any, without credentials).
    #[arg(long, global = true, env = "CORS_ORIGINS")]
    pub cors_origins: Option<String>,
    /// Let CORS requests carry credentials (needs an explicit origin list).
    #[arg(long, global = true, env = "PHOTO_API_CORS_CREDENTIALS", value_parser = parse_bool)]
    pub cors_credentials: Option<bool>,
    /// Requests per credential to routes needing `read` (default 6000/min; `off`).
    #[arg(long, global = true, env = "PHOTO_API_RATE_LIMIT_READ")]
    pub rate_limit_read: Option<String>,
    /// Requests per credential to routes needing `write` (default 3000/min; `off`).
    #[arg(long, global = true, env = "PHOTO_API_RATE_LIMIT_WRITE")]
    pub rate_limit_write: Option<String>,
    /// Requests per credential to routes needing `admin` (default 600/min; `off`).
    #[arg(long, global = true, env = "PHOTO_API_RATE_LIMIT_ADMIN")]
    pub rate_limit_admin: Option<String>,
    /// Requests per client address, any route (default 12000/min; `off`).
    #[arg(long, global = true, env = "PHOTO_API_RATE_LIMIT_ADDRESS")]
    pub rate_limit_address: Option<String>,
    /// Requests served at once; beyond it 503 + Retry-After (default 1024).
    #[arg(long, global = true, env = "PHOTO_API_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// Longest request URL (path and query) (default 8KiB).
    #[arg(long, global = true, env = "PHOTO_API_MAX_URL_BYTES")]
    pub max_url_bytes: Option<ByteSize>,
    /// Largest total of request headers (default 32KiB).
    #[arg(long, global = true, env = "PHOTO_API_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<ByteSize>,
    /// clamd to scan uploads with: tcp://host:3310 or unix:///run/clamav/clamd.ctl (default: none).
    #[arg(long, global = true, env = "PHOTO_API_CLAMD")]
    pub clamd: Option<String>,
    /// Limit of one malware scan (default 60s).
    #[arg(long, global = true, env = "PHOTO_API_CLAMD_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub clamd_timeout: Option<Duration>,
    /// PEM certificate chain: serve HTTPS directly (with PHOTO_API_TLS_KEY); reloaded on SIGHUP.
    #[arg(long, global = true, env = "PHOTO_API_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of PHOTO_API_TLS_CERT.
    #[arg(long, global = true, env = "PHOTO_API_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

mod opt_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The resolved, typed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub db_max_connections: u32,
    pub db_statement_timeout: Duration,
    pub api_key: Option<String>,
    pub signing_key: Option<String>,
    pub presign_expires: Duration,
    pub max_upload_size: u64,
    pub raw_ttl: Duration,
    pub sweep_interval: Duration,
    pub staging_max_age: Duration,
    pub download_url_ttl: Duration,
    pub files_max_size: u64,
    pub files_max_request_size: u64,
    pub files_max_per_request: usize,
    pub files_max_tree_entries: u64,
    pub files_gc_delay: Duration,
    pub files_max_url_ttl: Duration,
    pub idempotency_ttl: Duration,
    pub max_batch_size: usize,
    pub metrics_listen: Option<SocketAddr>,
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: OtlpProtocol,
    pub presets: photo_api_http::presets::Presets,
    pub webhook_retry_base: Duration,
    pub webhook_max_attempts: u32,
    pub webhook_timeout: Duration,
    pub job_ttl: Option<Duration>,
    pub source_url_timeout: Duration,
    pub source_url_max_redirects: u32,
    pub source_url_allow: Vec<photo_jobs::fetch::Cidr>,
    pub max_pixels: u64,
    pub max_side: u32,
    pub worker_mode: WorkerMode,
    pub worker_concurrency: usize,
    pub job_lease: Duration,
    pub job_timeout: Duration,
    pub max_attempts: u32,
    pub retry_backoff: Duration,
    pub poll_interval: Duration,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub log_level: String,
    pub log_format: LogFormat,
    /// `None`: the local directory store under the data directory.
    pub s3: Option<S3Settings>,
    /// `None`: jobs run on the SQL queue. `Some`: on Temporal.
    pub temporal: Option<photo_temporal::TemporalSettings>,
    /// `None`: bearer JWTs are not accepted (API keys only).
    pub jwt: Option<photo_api_http::jwt::JwtSettings>,
    /// Rate and size limits, CORS, HSTS.
    pub edge: photo_api_http::edge::EdgeConfig,
    /// `None`: uploads are not scanned for malware.
    pub clamd: Option<photo_api_http::scan::Clamd>,
    /// `Some`: `serve` speaks HTTPS itself.
    pub tls: Option<crate::tls::TlsFiles>,
}

/// Where the S3 adapter stores objects. Credentials come from the standard AWS chain, never
/// from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket_raw: String,
    pub bucket_processed: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub path_style: bool,
}

macro_rules! merge {
    ($cli:expr, $file:expr; $($f:ident),* $(,)?) => {
        Settings { $($f: $cli.$f.or($file.$f),)* }
    };
}

impl Settings {
    /// Reads the optional TOML file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }

    /// Flag/env values win over file values.
    pub fn over(self, file: Settings) -> Settings {
        merge!(self, file; listen, public_url, data_dir, database_url, db_max_connections,
            db_statement_timeout, api_key, signing_key,
            presign_expires_seconds, max_upload_size, raw_ttl, sweep_interval, staging_max_age,
            download_url_ttl, files_max_size, files_max_request_size, files_max_per_request,
            files_max_tree_entries, files_gc_delay, files_max_url_ttl,
            idempotency_ttl, max_batch_size, metrics_listen, otlp_endpoint, otlp_protocol,
            presets, default_preset, webhook_retry_base,
            webhook_max_attempts, webhook_timeout, source_url_timeout, source_url_max_redirects,
            source_url_allow, job_ttl,
            max_pixels, max_side, worker_mode, worker_concurrency, job_lease, job_timeout,
            max_attempts, retry_backoff, poll_interval, request_timeout, shutdown_grace,
            log_level, log_format, debug, s3_bucket_raw, s3_bucket_processed, aws_region,
            s3_endpoint, s3_path_style, temporal_target, temporal_namespace, temporal_task_queue,
            temporal_tls_cert, temporal_tls_key, temporal_tls_ca, temporal_tls_server_name,
            temporal_api_key, jwt_secret, jwt_jwks_url, jwt_issuer, jwt_audience,
            jwt_tenant_claim, jwt_scope_claim, jwt_default_scopes, jwt_allowed_roles,
            jwks_cache_ttl, jwks_min_refresh, cors_origins, cors_credentials, rate_limit_read,
            rate_limit_write, rate_limit_admin, rate_limit_address, max_concurrent_requests,
            max_url_bytes, max_header_bytes, clamd, clamd_timeout, tls_cert, tls_key)
    }

    /// Applies defaults and checks ranges.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let edge = edge_settings(&self)?;
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
        let database_url = match self.database_url {
            Some(u) => normalise_database_url(&u)?,
            None => format!("sqlite://{}", data_dir.join("photo-api.db").display()),
        };
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let clamd = match self
            .clamd
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(a) => Some(photo_api_http::scan::Clamd {
                addr: a
                    .parse()
                    .map_err(|e| anyhow::anyhow!("PHOTO_API_CLAMD: {e}"))?,
                timeout: self.clamd_timeout.unwrap_or(Duration::from_secs(60)),
            }),
        };
        let tls = match (self.tls_cert.clone(), self.tls_key.clone()) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert, key }),
            (Some(_), None) => bail!("PHOTO_API_TLS_CERT is set but PHOTO_API_TLS_KEY is not"),
            (None, Some(_)) => bail!("PHOTO_API_TLS_KEY is set but PHOTO_API_TLS_CERT is not"),
        };
        let mut edge = edge;
        edge.hsts |= tls.is_some();
        let c = Config {
            tls,
            clamd,
            edge,
            listen: self
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            public_url: self.public_url.map(|u| u.trim_end_matches('/').to_owned()),
            data_dir,
            database_url,
            db_max_connections: self.db_max_connections.unwrap_or(10),
            db_statement_timeout: self.db_statement_timeout.unwrap_or(Duration::from_secs(30)),
            api_key: self.api_key.filter(|k| !k.is_empty()),
            signing_key: self.signing_key.filter(|k| !k.is_empty()),
            presign_expires: Duration::from_secs(self.presign_expires_seconds.unwrap_or(300)),
            max_upload_size: self.max_upload_size.map_or(25_000_000, ByteSize::bytes),
            raw_ttl: self.raw_ttl.unwrap_or(Duration::from_secs(48 * 3600)),
            sweep_interval: self.sweep_interval.unwrap_or(Duration::from_secs(300)),
            staging_max_age: self.staging_max_age.unwrap_or(Duration::from_secs(3600)),
            download_url_ttl: self.download_url_ttl.unwrap_or(Duration::from_secs(3600)),
            files_max_size: self
                .files_max_size
                .map(ByteSize::bytes)
                .or(self.max_upload_size.map(ByteSize::bytes))
                .unwrap_or(25_000_000),
            files_max_request_size: self
                .files_max_request_size
                .map_or(1_000_000_000, ByteSize::bytes),
            files_max_per_request: self.files_max_per_request.unwrap_or(100),
            files_max_tree_entries: self.files_max_tree_entries.unwrap_or(10_000),
            files_gc_delay: self.files_gc_delay.unwrap_or(Duration::from_secs(3600)),
            files_max_url_ttl: self
                .files_max_url_ttl
                .unwrap_or(Duration::from_secs(7 * 24 * 3600)),
            idempotency_ttl: self
                .idempotency_ttl
                .unwrap_or(Duration::from_secs(24 * 3600)),
            max_batch_size: self.max_batch_size.unwrap_or(1000),
            metrics_listen: self.metrics_listen,
            otlp_endpoint: self.otlp_endpoint.filter(|e| !e.trim().is_empty()),
            otlp_protocol: self.otlp_protocol.unwrap_or(OtlpProtocol::HttpProtobuf),
            presets: photo_api_http::presets::Presets::parse(
                self.presets.as_deref(),
                self.default_preset.as_deref(),
            )
            .map_err(|e| anyhow::anyhow!("PHOTO_API_PRESETS / PHOTO_API_DEFAULT_PRESET: {e}"))?,
            webhook_retry_base: self.webhook_retry_base.unwrap_or(Duration::from_secs(5)),
            webhook_max_attempts: self.webhook_max_attempts.unwrap_or(20),
            webhook_timeout: self.webhook_timeout.unwrap_or(Duration::from_secs(10)),
            job_ttl: self.job_ttl.filter(|t| !t.is_zero()),
            source_url_timeout: self.source_url_timeout.unwrap_or(Duration::from_secs(30)),
            source_url_max_redirects: self.source_url_max_redirects.unwrap_or(3),
            source_url_allow: self
                .source_url_allow
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(photo_jobs::fetch::Cidr::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("PHOTO_API_SOURCE_URL_ALLOW: {e}"))?,
            max_pixels: self.max_pixels.unwrap_or(100_000_000),
            max_side: self.max_side.unwrap_or(16_384),
            worker_mode: self.worker_mode.unwrap_or(WorkerMode::Process),
            worker_concurrency: self.worker_concurrency.unwrap_or(cpus),
            job_lease: self.job_lease.unwrap_or(Duration::from_secs(30)),
            job_timeout: self.job_timeout.unwrap_or(Duration::from_secs(120)),
            max_attempts: self.max_attempts.unwrap_or(3),
            retry_backoff: self.retry_backoff.unwrap_or(Duration::from_secs(2)),
            poll_interval: self.poll_interval.unwrap_or(Duration::from_millis(250)),
            request_timeout: self.request_timeout.unwrap_or(Duration::from_secs(30)),
            shutdown_grace: self.shutdown_grace.unwrap_or(Duration::from_secs(20)),
            log_level: match (self.log_level, self.debug) {
                (Some(l), _) => l.to_ascii_lowercase(),
                (None, Some(true)) => "debug".into(),
                _ => "info".into(),
            },
            log_format: self.log_format.unwrap_or(LogFormat::Text),
            s3: s3_settings(
                self.s3_bucket_raw,
                self.s3_bucket_processed,
                self.aws_region,
                self.s3_endpoint,
                self.s3_path_style,
            )?,
            jwt: jwt_settings(JwtInput {
                secret: self.jwt_secret,
                jwks_url: self.jwt_jwks_url,
                issuer: self.jwt_issuer,
                audience: self.jwt_audience,
                tenant_claim: self.jwt_tenant_claim,
                scope_claim: self.jwt_scope_claim,
                default_scopes: self.jwt_default_scopes,
                allowed_roles: self.jwt_allowed_roles,
                cache_ttl: self.jwks_cache_ttl,
                min_refresh: self.jwks_min_refresh,
            })?,
            temporal: temporal_settings(TemporalInput {
                target: self.temporal_target,
                namespace: self.temporal_namespace,
                task_queue: self.temporal_task_queue,
                cert: self.temporal_tls_cert,
                key: self.temporal_tls_key,
                ca: self.temporal_tls_ca,
                server_name: self.temporal_tls_server_name,
                api_key: self.temporal_api_key,
            })?,
        };
        c.check()?;
        Ok(c)
    }
}

fn s3_settings(
    raw: Option<String>,
    processed: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    path_style: Option<bool>,
) -> anyhow::Result<Option<S3Settings>> {
    let nonempty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let (raw, processed) = match (nonempty(raw), nonempty(processed)) {
        (None, None) => return Ok(None),
        (Some(r), Some(p)) => (r, p),
        (Some(_), None) => bail!("S3_BUCKET_RAW is set but S3_BUCKET_PROCESSED is not; set both"),
        (None, Some(_)) => bail!("S3_BUCKET_PROCESSED is set but S3_BUCKET_RAW is not; set both"),
    };
    if raw == processed {
        bail!("S3_BUCKET_RAW and S3_BUCKET_PROCESSED must be different buckets");
    }
    let endpoint = nonempty(endpoint).map(|e| e.trim_end_matches('/').to_owned());
    if let Some(e) = &endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        bail!("AWS_ENDPOINT_URL must start with http:// or https://");
    }
    Ok(Some(S3Settings {
        path_style: path_style.unwrap_or(endpoint.is_some()),
        bucket_raw: raw,
        bucket_processed: processed,
        region: nonempty(region).unwrap_or_else(|| "us-east-1".into()),
        endpoint,
    }))
}

fn edge_settings(s: &Settings) -> anyhow::Result<photo_api_http::edge::EdgeConfig> {
    use photo_api_http::edge::{EdgeConfig, parse_rate};
    let rate = |v: &Option<String>, name: &str, default: &str| {
        parse_rate(v.as_deref().unwrap_or(default)).map_err(|e| anyhow::anyhow!("{name}: {e}"))
    };
    let cors_origins: Vec<String> = list(s.cors_origins.clone())
        .into_iter()
        .map(|o| o.trim_end_matches('/').to_owned())
        .collect();
    let cors_credentials = s.cors_credentials.unwrap_or(false);
    if cors_credentials && cors_origins.iter().any(|o| o == "*") {
        bail!(
            "CORS_ORIGINS=* cannot be combined with PHOTO_API_CORS_CREDENTIALS: list the origins"
        );
    }
    for o in &cors_origins {
        if o != "*" && !(o.starts_with("https://") || o.starts_with("http://")) {
            bail!("CORS_ORIGINS: {o:?} is not an origin like https://app.example.com");
        }
    }
    let size = |v: Option<ByteSize>, default: u64| {
        usize::try_from(v.map_or(default, ByteSize::bytes)).unwrap_or(usize::MAX)
    };
    let e = EdgeConfig {
        rate_read: rate(&s.rate_limit_read, "PHOTO_API_RATE_LIMIT_READ", "6000/min")?,
        rate_write: rate(
            &s.rate_limit_write,
            "PHOTO_API_RATE_LIMIT_WRITE",
            "3000/min",
        )?,
        rate_admin: rate(&s.rate_limit_admin, "PHOTO_API_RATE_LIMIT_ADMIN", "600/min")?,
        rate_address: rate(
            &s.rate_limit_address,
            "PHOTO_API_RATE_LIMIT_ADDRESS",
            "12000/min",
        )?,
        max_concurrent: s.max_concurrent_requests.unwrap_or(1024),
        max_url_bytes: size(s.max_url_bytes, 8 * 1024),
        max_header_bytes: size(s.max_header_bytes, 32 * 1024),
        cors_origins,
        cors_credentials,
        hsts: s
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://")),
    };
    if e.max_concurrent == 0 {
        bail!("PHOTO_API_MAX_CONCURRENT_REQUESTS must be at least 1");
    }
    if e.max_url_bytes < 256 || e.max_header_bytes < 1024 {
        bail!("PHOTO_API_MAX_URL_BYTES must be at least 256 and PHOTO_API_MAX_HEADER_BYTES 1KiB");
    }
    Ok(e)
}

struct JwtInput {
    secret: Option<String>,
    jwks_url: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    tenant_claim: Option<String>,
    scope_claim: Option<String>,
    default_scopes: Option<String>,
    allowed_roles: Option<String>,
    cache_ttl: Option<Duration>,
    min_refresh: Option<Duration>,
}

fn list(v: Option<String>) -> Vec<String> {
    v.unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn jwt_settings(i: JwtInput) -> anyhow::Result<Option<photo_api_http::jwt::JwtSettings>> {
    let nonempty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let secret = nonempty(i.secret);
    let jwks_url = nonempty(i.jwks_url);
    if secret.is_none() && jwks_url.is_none() {
        return Ok(None);
    }
    if let Some(s) = &secret
        && s.len() < 32
    {
        bail!("PHOTO_API_JWT_SECRET must be at least 32 characters");
    }
    if let Some(u) = &jwks_url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        bail!("PHOTO_API_JWT_JWKS_URL must be an http(s) URL");
    }
    let default_scopes = photo_core::Scope::parse_list(
        &nonempty(i.default_scopes).unwrap_or_else(|| "read,write".into()),
    )
    .context("PHOTO_API_JWT_DEFAULT_SCOPES")?;
    if default_scopes.contains(&photo_core::Scope::Global) {
        bail!("PHOTO_API_JWT_DEFAULT_SCOPES cannot include global");
    }
    Ok(Some(photo_api_http::jwt::JwtSettings {
        hs256_secret: secret.map(String::into_bytes),
        jwks_url,
        issuer: nonempty(i.issuer),
        audience: list(i.audience),
        tenant_claim: nonempty(i.tenant_claim).unwrap_or_else(|| "tenant_id".into()),
        scope_claim: nonempty(i.scope_claim).unwrap_or_else(|| "scope".into()),
        default_scopes,
        allowed_roles: list(i.allowed_roles),
        jwks_cache_ttl: i.cache_ttl.unwrap_or(Duration::from_secs(600)),
        jwks_min_refresh: i.min_refresh.unwrap_or(Duration::from_secs(10)),
    }))
}

struct TemporalInput {
    target: Option<String>,
    namespace: Option<String>,
    task_queue: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    server_name: Option<String>,
    api_key: Option<String>,
}

fn temporal_settings(i: TemporalInput) -> anyhow::Result<Option<photo_temporal::TemporalSettings>> {
    let nonempty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let Some(target) = nonempty(i.target) else {
        let set = i.cert.is_some() || i.key.is_some() || i.ca.is_some() || i.api_key.is_some();
        if set {
            bail!("Temporal TLS or API-key settings are set but TEMPORAL_TARGET is not");
        }
        return Ok(None);
    };
    let tls = match (i.cert, i.key) {
        (Some(cert), Some(key)) => Some(photo_temporal::TlsFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) => {
            bail!("PHOTO_API_TEMPORAL_TLS_CERT is set but PHOTO_API_TEMPORAL_TLS_KEY is not")
        }
        (None, Some(_)) => {
            bail!("PHOTO_API_TEMPORAL_TLS_KEY is set but PHOTO_API_TEMPORAL_TLS_CERT is not")
        }
    };
    Ok(Some(photo_temporal::TemporalSettings {
        target,
        namespace: nonempty(i.namespace).unwrap_or_else(|| "default".into()),
        task_queue: nonempty(i.task_queue).unwrap_or_else(|| "image-tasks".into()),
        tls,
        server_ca: i.ca,
        server_name: nonempty(i.server_name),
        api_key: nonempty(i.api_key),
    }))
}

/// Accepts the design documents' `postgresql+asyncpg://` form as `postgres://`.
pub fn normalise_database_url(u: &str) -> anyhow::Result<String> {
    let u = u.trim();
    if let Some(rest) = u.strip_prefix("postgresql+asyncpg://") {
        return Ok(format!("postgres://{rest}"));
    }
    if u.starts_with("sqlite:") || u.starts_with("postgres://") || u.starts_with("postgresql://") {
        return Ok(u.to_owned());
    }
    bail!("DATABASE_URL must start with sqlite://, postgres:// or postgresql+asyncpg://")
}

impl Config {
    fn check(&self) -> anyhow::Result<()> {
        let positive = [
            ("PRESIGN_EXPIRES_SECONDS", self.presign_expires),
            ("PHOTO_API_JOB_LEASE", self.job_lease),
            ("PHOTO_API_JOB_TIMEOUT", self.job_timeout),
            ("PHOTO_API_SWEEP_INTERVAL", self.sweep_interval),
            ("PHOTO_API_IDEMPOTENCY_TTL", self.idempotency_ttl),
            ("PHOTO_API_WEBHOOK_RETRY_BASE", self.webhook_retry_base),
            ("PHOTO_API_WEBHOOK_TIMEOUT", self.webhook_timeout),
            ("PHOTO_API_SOURCE_URL_TIMEOUT", self.source_url_timeout),
            ("PHOTO_API_POLL_INTERVAL", self.poll_interval),
            ("PHOTO_API_REQUEST_TIMEOUT", self.request_timeout),
        ];
        for (name, d) in positive {
            if d.is_zero() {
                bail!("{name} must be greater than zero");
            }
        }
        if self.max_upload_size == 0 {
            bail!("MAX_UPLOAD_SIZE must be greater than zero");
        }
        if self.files_max_size == 0 || self.files_max_request_size == 0 {
            bail!(
                "PHOTO_API_FILES_MAX_SIZE and PHOTO_API_FILES_MAX_REQUEST_SIZE must be greater than zero"
            );
        }
        if self.files_max_per_request == 0 || self.files_max_per_request > 10_000 {
            bail!("PHOTO_API_FILES_MAX_PER_REQUEST must be between 1 and 10000");
        }
        if self.files_max_tree_entries == 0 {
            bail!("PHOTO_API_FILES_MAX_TREE_ENTRIES must be at least 1");
        }
        if self.files_max_url_ttl.is_zero() {
            bail!("PHOTO_API_FILES_MAX_URL_TTL must be greater than zero");
        }
        if self.source_url_max_redirects > 10 {
            bail!("PHOTO_API_SOURCE_URL_MAX_REDIRECTS must be between 0 and 10");
        }
        if self.webhook_max_attempts == 0 || self.webhook_max_attempts > 100 {
            bail!("PHOTO_API_WEBHOOK_MAX_ATTEMPTS must be between 1 and 100");
        }
        if self.max_batch_size == 0 || self.max_batch_size > 10_000 {
            bail!("PHOTO_API_MAX_BATCH_SIZE must be between 1 and 10000");
        }
        if self.max_attempts == 0 {
            bail!("PHOTO_API_MAX_ATTEMPTS must be at least 1");
        }
        if self.worker_concurrency == 0 || self.worker_concurrency > 256 {
            bail!("PHOTO_API_WORKER_CONCURRENCY must be between 1 and 256");
        }
        if self.db_max_connections == 0 || self.db_max_connections > 1000 {
            bail!("PHOTO_API_DB_MAX_CONNECTIONS must be between 1 and 1000");
        }
        if let Some(k) = &self.api_key
            && k.len() < 16
        {
            bail!("API_KEY must be at least 16 characters");
        }
        Ok(())
    }

    /// Connection pool settings (PostgreSQL). Acquiring a connection gives up after 5 s, so
    /// no request hangs on a database that is down; the API answers 503 instead.
    pub fn db_options(&self) -> photo_db::PgOptions {
        photo_db::PgOptions {
            max_connections: self.db_max_connections,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: self.db_statement_timeout,
        }
    }

    /// Decoder limits.
    pub fn limits(&self) -> photo_imaging::Limits {
        photo_imaging::Limits {
            max_width: self.max_side,
            max_height: self.max_side,
            max_pixels: self.max_pixels,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_beat_file_and_defaults_fill_the_rest() {
        let file: Settings = toml::from_str(
            "listen = \"0.0.0.0:9000\"\nmax_upload_size = \"10MB\"\nraw_ttl = \"2h\"\nmax_attempts = 5",
        )
        .unwrap();
        let cli = Settings {
            max_attempts: Some(7),
            ..Default::default()
        };
        let c = cli.over(file).resolve().unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.max_upload_size, 10_000_000);
        assert_eq!(c.raw_ttl, Duration::from_secs(7200));
        assert_eq!(c.max_attempts, 7);
        assert_eq!(c.presign_expires, Duration::from_secs(300));
        assert!(c.database_url.starts_with("sqlite://./data/"));
        assert_eq!(c.db_max_connections, 10);
        assert_eq!(c.db_statement_timeout, Duration::from_secs(30));
    }

    #[test]
    fn postgres_urls_and_pool_settings() {
        let file: Settings =
            toml::from_str("db_max_connections = 4\ndb_statement_timeout = \"5s\"").unwrap();
        let cli = Settings {
            database_url: Some("postgresql+asyncpg://u@db/photos".into()),
            db_statement_timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let c = cli.over(file).resolve().unwrap();
        assert_eq!(c.database_url, "postgres://u@db/photos");
        let o = c.db_options();
        assert_eq!(o.max_connections, 4);
        assert_eq!(o.statement_timeout, Duration::from_secs(2));
        let e = Settings {
            db_max_connections: Some(0),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(
            e.to_string().contains("PHOTO_API_DB_MAX_CONNECTIONS"),
            "{e}"
        );
    }

    #[test]
    fn temporal_settings_default_and_pair_up() {
        assert!(Settings::default().resolve().unwrap().temporal.is_none());
        let t = Settings {
            temporal_target: Some("127.0.0.1:7233".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap()
        .temporal
        .unwrap();
        assert_eq!(t.namespace, "default");
        assert_eq!(t.task_queue, "image-tasks");
        assert!(!t.uses_tls());
        let file: Settings = toml::from_str(
            "temporal_target = \"ns.acct.tmprl.cloud:7233\"\ntemporal_namespace = \"ns.acct\"\n\
             temporal_tls_cert = \"/c.pem\"\ntemporal_tls_key = \"/k.pem\"",
        )
        .unwrap();
        let t = file.resolve().unwrap().temporal.unwrap();
        assert_eq!(t.namespace, "ns.acct");
        assert!(t.uses_tls());
        let e = Settings {
            temporal_target: Some("x:7233".into()),
            temporal_tls_cert: Some("/c.pem".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("PHOTO_API_TEMPORAL_TLS_KEY"), "{e}");
        let with_key = Settings {
            temporal_target: Some("x:7233".into()),
            temporal_api_key: Some("secret-key".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(
            !format!("{:?}", with_key.temporal).contains("secret-key"),
            "the API key never reaches logs"
        );
    }

    #[test]
    fn presets_come_from_the_file_or_env_and_are_checked_at_start() {
        let file: Settings = toml::from_str(
            "presets = '{\"web\": [{\"job_type\": \"analyze\"}], \"t\": [{\"job_type\": \"thumbnail\", \"params\": {\"width\": 8, \"height\": 8}}]}'\ndefault_preset = \"web\"",
        )
        .unwrap();
        let c = Settings::default().over(file.clone()).resolve().unwrap();
        assert_eq!(c.presets.get("web").map(<[_]>::len), Some(1));
        assert_eq!(c.presets.default_jobs().len(), 1);
        let flag = Settings {
            default_preset: Some("t".into()),
            ..Default::default()
        };
        let c = flag.over(file).resolve().unwrap();
        assert_eq!(
            c.presets.default_jobs()[0].job_type(),
            photo_core::JobType::Thumbnail
        );
        for (presets, default) in [
            ("{\"web\": []}", None),
            ("not json", None),
            ("{\"web\": [{\"job_type\": \"analyze\"}]}", Some("mobile")),
        ] {
            let e = Settings {
                presets: Some(presets.into()),
                default_preset: default.map(Into::into),
                ..Default::default()
            }
            .resolve()
            .unwrap_err();
            assert!(e.to_string().contains("PHOTO_API_PRESETS"), "{e}");
        }
    }

    #[test]
    fn bad_values_fail_with_the_setting_name() {
        let e = Settings {
            max_attempts: Some(0),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("PHOTO_API_MAX_ATTEMPTS"), "{e}");
        assert!(
            toml::from_str::<Settings>("bogus = 1").is_err(),
            "unknown keys are refused"
        );
        assert!(toml::from_str::<Settings>("raw_ttl = \"forever\"").is_err());
        assert!(normalise_database_url("mysql://x").is_err());
        assert_eq!(
            normalise_database_url("postgresql+asyncpg://u:p@h:5432/db").unwrap(),
            "postgres://u:p@h:5432/db"
        );
    }
}
