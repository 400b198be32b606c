//! `photo-api`: the one binary. `serve` runs the API (and supervises a worker process),
//! `worker` runs workers alone, `migrate` and `sweep` are operator tools.

mod config;
mod engine;
mod keys;
mod metrics;
mod serve;
mod telemetry;
mod tenants;
mod tls;
mod wiring;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Settings;

/// Self-hostable photo processing: uploads, durable jobs, signed downloads.
#[derive(Debug, Parser)]
#[command(name = "photo-api", version, about)]
struct Cli {
    /// Optional TOML config file (keys are the long flag names with underscores).
    #[arg(long, global = true, env = "PHOTO_API_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API server (and, by default, a supervised worker process).
    Serve,
    /// Run workers only.
    Worker,
    /// Apply pending database migrations (or revert with --down).
    Migrate {
        /// Revert this many of the newest migrations instead.
        #[arg(long)]
        down: Option<usize>,
    },
    /// Expire old uploads and staging leftovers once, then exit.
    Sweep,
    /// Create, list and revoke API keys (straight in the database; no server needed).
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Create, list, change, suspend and reactivate tenants (straight in the database).
    Tenants {
        #[command(subcommand)]
        command: tenants::TenantsCommand,
    },
    /// Create the S3 buckets if missing and apply their settings (public access blocked,
    /// versioning, lifecycle rules); with local storage, prepare the data directory.
    Setup,
}

/// Set by `serve` on the worker processes it supervises: the merged settings (no secrets).
pub const CHILD_SETTINGS_ENV: &str = "PHOTO_API_CHILD_SETTINGS";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = (|| -> anyhow::Result<()> {
        let mut file = match &cli.config {
            Some(p) => Settings::from_file(p)?,
            None => Settings::default(),
        };
        if let Ok(json) = std::env::var(CHILD_SETTINGS_ENV) {
            let inherited: Settings = serde_json::from_str(&json)?;
            file = inherited.over(file);
        }
        let cfg = cli.settings.clone().over(file).resolve()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .max_blocking_threads(cfg.worker_concurrency.max(4) * 2)
            .build()?;
        let component = match cli.command {
            Command::Worker => "worker",
            _ => "api",
        };
        // Flushes buffered trace spans when main returns.
        let _telemetry = telemetry::init(&cfg, rt.handle(), component)?;
        // A LocalSet: the Temporal worker's future is not `Send` (workflow code runs on one
        // thread), so in-process workers run as a local task of the main thread.
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            match cli.command {
                Command::Serve => serve::serve(cfg, cli.settings.clone()).await,
                Command::Worker => serve::worker(cfg).await,
                Command::Migrate { down } => serve::migrate(cfg, down).await,
                Command::Sweep => serve::sweep(cfg).await,
                Command::Setup => serve::setup(cfg).await,
                Command::Keys { command } => keys::run(cfg, command).await,
                Command::Tenants { command } => tenants::run(cfg, command).await,
            }
        })
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("photo-api: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
