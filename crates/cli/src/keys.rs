//! `photo-api keys …`: API keys managed straight in the database (no server needed). Every change
//! is recorded in the audit log with the actor `cli`.

use anyhow::{Context, bail};
use clap::Subcommand;
use photo_api_http::auth::new_key_record;
use photo_api_http::routes::admin::{clean_key_name, now};
use photo_core::{Scope, TenantId};
use photo_db::NewAuditEntry;
use serde_json::json;

use crate::config::Config;
use crate::wiring;

/// `photo-api keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and cannot be recovered.
    Create {
        /// The tenant the key acts for ([a-z0-9][a-z0-9_-]{0,62}); an unknown tenant is created
        /// (active), recorded in the audit log as `tenant.created`.
        #[arg(long)]
        tenant: String,
        /// Comma-separated scopes: read, write, admin, global.
        #[arg(long, default_value = "read,write")]
        scope: String,
        /// Lifetime, e.g. 30d or 12h (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
        /// A label for people.
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys (never their secrets).
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key at once, by its id (the `<id>` of `pk_<id>_<secret>`).
    Revoke {
        /// The key's public id.
        id: String,
    },
}

fn cli_audit(action: &str, target: &str, detail: serde_json::Value) -> NewAuditEntry {
    NewAuditEntry {
        at: now(),
        actor: "cli".into(),
        actor_tenant: None,
        action: action.into(),
        target: Some(target.into()),
        detail,
    }
}

/// Runs one `keys` subcommand.
pub async fn run(cfg: Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let repo = wiring::open_repo(&cfg).await?;
    match cmd {
        KeysCommand::Create {
            tenant,
            scope,
            expires,
            name,
        } => {
            let tenant = TenantId::parse(&tenant).context("--tenant")?;
            let scopes = Scope::parse_list(&scope).context("--scope")?;
            if scopes.is_empty() {
                bail!("--scope must name at least one of read, write, admin, global");
            }
            let now = now();
            let expires_at = match expires {
                None => None,
                Some(d) => {
                    let d = humantime::parse_duration(&d)
                        .ok()
                        .and_then(|d| chrono::Duration::from_std(d).ok())
                        .filter(|d| *d > chrono::Duration::zero())
                        .context("--expires must be a positive duration such as 30d or 12h")?;
                    Some(now.checked_add_signed(d).context("--expires is too long")?)
                }
            };
            let name = clean_key_name(name).map_err(|e| anyhow::anyhow!("--name: {}", e.detail))?;
            let (generated, rec) = new_key_record(tenant, name, &scopes, expires_at, now);
            let detail =
                json!({"name": rec.name, "scopes": rec.scopes, "expires_at": rec.expires_at});
            repo.create_api_key(&rec, &cli_audit("key.created", &rec.key_id, detail))
                .await?;
            println!(
                "Created API key {} for tenant {} (scopes {}; expires {}).",
                rec.key_id,
                rec.tenant,
                rec.scopes.join(","),
                rec.expires_at
                    .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
            );
            println!("It is shown only this once; store it now:");
            println!("API key: {}", generated.key);
        }
        KeysCommand::List { tenant, json } => {
            let tenant = tenant
                .map(|t| TenantId::parse(&t))
                .transpose()
                .context("--tenant")?;
            let keys = repo.list_api_keys(tenant.as_ref()).await?;
            let views: Vec<_> = keys
                .iter()
                .map(photo_api_http::routes::admin::KeyView::from)
                .collect();
            if json {
                for v in &views {
                    println!("{}", serde_json::to_string(v)?);
                }
            } else {
                println!(
                    "{:<12}  {:<20}  {:<8}  {:<24}  {:<25}  NAME",
                    "ID", "TENANT", "STATUS", "SCOPES", "EXPIRES"
                );
                for v in &views {
                    println!(
                        "{:<12}  {:<20}  {:<8}  {:<24}  {:<25}  {}",
                        v.key_id,
                        v.tenant,
                        v.status,
                        v.scopes.join(","),
                        v.expires_at
                            .map_or_else(|| "never".into(), |t| t.to_rfc3339()),
                        v.name
                    );
                }
            }
        }
        KeysCommand::Revoke { id } => {
            match repo
                .revoke_api_key(None, &id, &cli_audit("key.revoked", &id, json!({})))
                .await?
            {
                Some(k) => println!("revoked key {} of tenant {}", k.key_id, k.tenant),
                None => bail!("no key with id {id:?} (see `photo-api keys list`)"),
            }
        }
    }
    Ok(())
}
