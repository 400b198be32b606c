//! `photo-api tenants …`: tenants managed straight in the database (no server needed), like
//! `/admin/tenants`. Every change is recorded in the audit log with the actor `cli`, in the same
//! transaction.

use anyhow::{Context, bail};
use clap::Subcommand;
use photo_api_http::routes::admin::now;
use photo_api_http::routes::tenants::{TenantView, clean_display_name};
use photo_core::TenantId;
use photo_db::{NewAuditEntry, Tenant, TenantChange, TenantStatus};
use serde_json::json;

use crate::config::Config;
use crate::wiring;

/// `photo-api tenants` subcommands.
#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant.
    Create {
        /// Its id ([a-z0-9][a-z0-9_-]{0,62}).
        id: String,
        /// A name for people.
        #[arg(long)]
        name: Option<String>,
    },
    /// List tenants.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant (JSON).
    Show {
        /// The tenant's id.
        id: String,
    },
    /// Change a tenant's display name (`--name ""` clears it).
    Update {
        /// The tenant's id.
        id: String,
        /// The new display name.
        #[arg(long)]
        name: String,
    },
    /// Suspend a tenant: its keys and tokens are refused (403 tenant_suspended) at once.
    Suspend {
        /// The tenant's id.
        id: String,
    },
    /// Reactivate a suspended tenant.
    Reactivate {
        /// The tenant's id.
        id: String,
    },
}

fn cli_audit(action: &str, target: &TenantId, detail: serde_json::Value) -> NewAuditEntry {
    NewAuditEntry {
        at: now(),
        actor: "cli".into(),
        actor_tenant: None,
        action: action.into(),
        target: Some(target.to_string()),
        detail,
    }
}

/// Runs one `tenants` subcommand.
pub async fn run(cfg: Config, cmd: TenantsCommand) -> anyhow::Result<()> {
    let repo = wiring::open_repo(&cfg).await?;
    let parse = |id: &str| TenantId::parse(id).context("tenant id");
    let (id, change, action) = match cmd {
        TenantsCommand::Create { id, name } => {
            let id = parse(&id)?;
            let display_name =
                clean_display_name(name).map_err(|e| anyhow::anyhow!("--name: {}", e.detail))?;
            let at = photo_db::now_ms();
            let t = Tenant {
                tenant: id.clone(),
                display_name,
                status: TenantStatus::Active,
                created_at: at,
                updated_at: at,
            };
            let detail = json!({"display_name": t.display_name, "status": "active"});
            if !repo
                .create_tenant(&t, &cli_audit("tenant.created", &id, detail))
                .await?
            {
                bail!("tenant {id} exists (see `photo-api tenants show {id}`)");
            }
            println!("created tenant {id}");
            return Ok(());
        }
        TenantsCommand::List { json } => {
            let views: Vec<_> = repo
                .list_tenants(None)
                .await?
                .iter()
                .map(TenantView::from)
                .collect();
            if json {
                for v in &views {
                    println!("{}", serde_json::to_string(v)?);
                }
            } else {
                println!("{:<24}  {:<9}  {:<25}  NAME", "ID", "STATUS", "CREATED");
                for v in &views {
                    println!(
                        "{:<24}  {:<9}  {:<25}  {}",
                        v.tenant_id,
                        v.status,
                        v.created_at.to_rfc3339(),
                        v.display_name.as_deref().unwrap_or("")
                    );
                }
            }
            return Ok(());
        }
        TenantsCommand::Show { id } => {
            let id = parse(&id)?;
            let Some(t) = repo.get_tenant(&id).await? else {
                bail!("no tenant {id} (see `photo-api tenants list`)");
            };
            println!("{}", serde_json::to_string_pretty(&TenantView::from(&t))?);
            return Ok(());
        }
        TenantsCommand::Update { id, name } => {
            let name = clean_display_name(Some(name))
                .map_err(|e| anyhow::anyhow!("--name: {}", e.detail))?;
            let change = TenantChange {
                display_name: Some(name),
                ..Default::default()
            };
            (parse(&id)?, change, "tenant.updated")
        }
        TenantsCommand::Suspend { id } => {
            let change = TenantChange {
                status: Some(TenantStatus::Suspended),
                ..Default::default()
            };
            (parse(&id)?, change, "tenant.suspended")
        }
        TenantsCommand::Reactivate { id } => {
            let change = TenantChange {
                status: Some(TenantStatus::Active),
                ..Default::default()
            };
            (parse(&id)?, change, "tenant.reactivated")
        }
    };
    let audit = cli_audit(action, &id, json!({}));
    match repo
        .update_tenant(&id, &change, photo_db::now_ms(), &audit)
        .await?
    {
        Some((t, true)) => println!("tenant {id}: {} ({action})", t.status.as_str()),
        Some((t, false)) => println!("tenant {id}: {} (unchanged)", t.status.as_str()),
        None => bail!("no tenant {id} (see `photo-api tenants list`)"),
    }
    Ok(())
}
