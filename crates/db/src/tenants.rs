//! Tenants: one row per tenant with a display name and a status (`active` or `suspended`).
//! Every change is written together with its audit-log entry, in one transaction, so the log can
//! never miss one. A tenant comes into being explicitly (`/admin/tenants`, `photo-api tenants
//! create`) or implicitly with its first API key; a tenant with no row (a JWT's tenant, or
//! `default` while only the bootstrap key exists) is active.
//!
//! Both databases run the same SQL (numbered `$n` parameters, times as Unix milliseconds), so
//! the implementation is one macro instantiated per driver, like the file tree's.

use chrono::{DateTime, Utc};
use photo_core::TenantId;

use crate::{DbResult, NewAuditEntry};

/// Whether a tenant's credentials are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TenantStatus {
    /// Served.
    Active,
    /// Every request with one of its keys or tokens is refused (`403 tenant_suspended`).
    Suspended,
}

impl TenantStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    /// Parses [`TenantStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Its id (the `tenant` of keys, tokens and object keys).
    pub tenant: TenantId,
    /// A name for people; sanitised at the edge.
    pub display_name: Option<String>,
    /// Active or suspended.
    pub status: TenantStatus,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A change to a tenant; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantChange {
    /// New display name (`Some(None)` clears it).
    pub display_name: Option<Option<String>>,
    /// New status.
    pub status: Option<TenantStatus>,
}

/// The tenants table.
#[async_trait::async_trait]
pub trait TenantRepo {
    /// Creates `tenant` with its audit entry (action `tenant.created`) in one transaction. False
    /// (and nothing written) when a tenant with that id exists.
    async fn create_tenant(&self, tenant: &Tenant, audit: &NewAuditEntry) -> DbResult<bool>;

    /// One tenant.
    async fn get_tenant(&self, tenant: &TenantId) -> DbResult<Option<Tenant>>;

    /// Every tenant (only `only` when given), by id.
    async fn list_tenants(&self, only: Option<&TenantId>) -> DbResult<Vec<Tenant>>;

    /// Applies `change` to a tenant. `None` when there is no such tenant. When something
    /// actually changed, the audit entry is written in the same transaction with the action
    /// given and, merged into its `detail`, `{"changes": {field: {"from", "to"}}}`; a change
    /// to the same values writes nothing. Returns the tenant as it is now and whether it changed.
    async fn update_tenant(
        &self,
        tenant: &TenantId,
        change: &TenantChange,
        at: DateTime<Utc>,
        audit: &NewAuditEntry,
    ) -> DbResult<Option<(Tenant, bool)>>;
}

/// Implements [`TenantRepo`] for a repository type with a `pool` field, given its driver's row
/// type, the statement that opens a write transaction and the clause that locks a row read in
/// it; also defines `ensure_tenant`, which
/// key creation calls inside its own transaction.
macro_rules! tenant_repo {
    ($repo:ty, $row:ty, $begin:literal, $lock:literal) => {
        fn tenant_from_row(r: &$row) -> $crate::DbResult<$crate::tenants::Tenant> {
            use sqlx::Row;
            use $crate::rows::corrupt;
            let status: String = r.try_get("status")?;
            Ok($crate::tenants::Tenant {
                tenant: photo_core::TenantId::parse(&r.try_get::<String, _>("tenant_id")?)
                    .map_err(|e| corrupt("tenant", e))?,
                display_name: r.try_get("display_name")?,
                status: $crate::tenants::TenantStatus::parse(&status)
                    .ok_or_else(|| corrupt("tenant status", &status))?,
                created_at: $crate::rows::from_ms(r.try_get("created_at_ms")?),
                updated_at: $crate::rows::from_ms(r.try_get("updated_at_ms")?),
            })
        }

        /// Writes an audit entry for `tenant` inside `tx`.
        async fn tenant_audit(
            tx: &mut sqlx::Transaction<'static, <$row as sqlx::Row>::Database>,
            tenant: &photo_core::TenantId,
            e: &$crate::NewAuditEntry,
        ) -> $crate::DbResult<()> {
            sqlx::query(
                "INSERT INTO audit_log (at, tenant_id, actor, actor_tenant, action, target, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(e.at)
            .bind(tenant.as_str())
            .bind(&e.actor)
            .bind(e.actor_tenant.as_ref().map(photo_core::TenantId::as_str))
            .bind(&e.action)
            .bind(&e.target)
            .bind(e.detail.to_string())
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// Creates `tenant` (active) unless it exists; when it did not, records `tenant.created`
        /// by the actor of `cause` with `{"implicit": true, "via": <cause's action>}`.
        async fn ensure_tenant(
            tx: &mut sqlx::Transaction<'static, <$row as sqlx::Row>::Database>,
            tenant: &photo_core::TenantId,
            cause: &$crate::NewAuditEntry,
        ) -> $crate::DbResult<()> {
            let at = $crate::rows::ms(cause.at);
            let n = sqlx::query(
                "INSERT INTO tenants (tenant_id, status, created_at_ms, updated_at_ms)
                 VALUES ($1, 'active', $2, $2) ON CONFLICT (tenant_id) DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(at)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if n == 1 {
                let entry = $crate::NewAuditEntry {
                    action: "tenant.created".into(),
                    target: Some(tenant.as_str().to_owned()),
                    detail: serde_json::json!({"implicit": true, "via": cause.action}),
                    ..cause.clone()
                };
                tenant_audit(tx, tenant, &entry).await?;
            }
            Ok(())
        }

        #[async_trait::async_trait]
        impl $crate::tenants::TenantRepo for $repo {
            #[tracing::instrument(name = "db.create_tenant", level = "debug", skip_all, err(level = "debug"))]
            async fn create_tenant(
                &self,
                t: &$crate::tenants::Tenant,
                audit: &$crate::NewAuditEntry,
            ) -> $crate::DbResult<bool> {
                let mut tx = self.pool.begin_with($begin).await?;
                let n = sqlx::query(
                    "INSERT INTO tenants (tenant_id, display_name, status, created_at_ms,
                         updated_at_ms)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO NOTHING",
                )
                .bind(t.tenant.as_str())
                .bind(&t.display_name)
                .bind(t.status.as_str())
                .bind($crate::rows::ms(t.created_at))
                .bind($crate::rows::ms(t.updated_at))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n != 1 {
                    return Ok(false);
                }
                tenant_audit(&mut tx, &t.tenant, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            #[tracing::instrument(name = "db.get_tenant", level = "debug", skip_all, err(level = "debug"))]
            async fn get_tenant(
                &self,
                tenant: &photo_core::TenantId,
            ) -> $crate::DbResult<Option<$crate::tenants::Tenant>> {
                sqlx::query("SELECT * FROM tenants WHERE tenant_id = $1")
                    .bind(tenant.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(tenant_from_row)
                    .transpose()
            }

            #[tracing::instrument(name = "db.list_tenants", level = "debug", skip_all, err(level = "debug"))]
            async fn list_tenants(
                &self,
                only: Option<&photo_core::TenantId>,
            ) -> $crate::DbResult<Vec<$crate::tenants::Tenant>> {
                sqlx::query(
                    "SELECT * FROM tenants WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY tenant_id",
                )
                .bind(only.map(photo_core::TenantId::as_str))
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(tenant_from_row)
                .collect()
            }

            #[tracing::instrument(name = "db.update_tenant", level = "debug", skip_all, err(level = "debug"))]
            async fn update_tenant(
                &self,
                tenant: &photo_core::TenantId,
                change: &$crate::tenants::TenantChange,
                at: chrono::DateTime<chrono::Utc>,
                audit: &$crate::NewAuditEntry,
            ) -> $crate::DbResult<Option<($crate::tenants::Tenant, bool)>> {
                let mut tx = self.pool.begin_with($begin).await?;
                // `$lock` (PostgreSQL: FOR UPDATE) serialises concurrent changes, so each is
                // applied and audited against the state it saw; SQLite's IMMEDIATE transaction
                // holds the write lock already.
                let Some(row) =
                    sqlx::query(concat!("SELECT * FROM tenants WHERE tenant_id = $1", $lock))
                        .bind(tenant.as_str())
                        .fetch_optional(&mut *tx)
                        .await?
                else {
                    return Ok(None);
                };
                let before = tenant_from_row(&row)?;
                let mut after = before.clone();
                let mut changes = serde_json::Map::new();
                if let Some(name) = &change.display_name
                    && *name != before.display_name
                {
                    changes.insert(
                        "display_name".into(),
                        serde_json::json!({"from": before.display_name, "to": name}),
                    );
                    after.display_name = name.clone();
                }
                if let Some(status) = change.status
                    && status != before.status
                {
                    changes.insert(
                        "status".into(),
                        serde_json::json!({"from": before.status.as_str(), "to": status.as_str()}),
                    );
                    after.status = status;
                }
                if changes.is_empty() {
                    return Ok(Some((before, false)));
                }
                after.updated_at = at;
                sqlx::query(
                    "UPDATE tenants SET display_name = $1, status = $2, updated_at_ms = $3
                     WHERE tenant_id = $4",
                )
                .bind(&after.display_name)
                .bind(after.status.as_str())
                .bind($crate::rows::ms(at))
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?;
                let mut detail = match &audit.detail {
                    serde_json::Value::Object(m) => m.clone(),
                    _ => serde_json::Map::new(),
                };
                detail.insert("changes".into(), serde_json::Value::Object(changes));
                let entry = $crate::NewAuditEntry {
                    detail: serde_json::Value::Object(detail),
                    ..audit.clone()
                };
                tenant_audit(&mut tx, tenant, &entry).await?;
                tx.commit().await?;
                Ok(Some((after, true)))
            }
        }
    };
}
pub(crate) use tenant_repo;

/// Now, to the millisecond: what the tenants table stores, so an answer built from the values
/// written equals what a later read returns.
pub fn now_ms() -> DateTime<Utc> {
    crate::rows::from_ms(crate::rows::ms(Utc::now()))
}
