//! The tenants admin API: `/admin/tenants`. Creating, changing, suspending and reactivating a
//! tenant needs a *global* admin (scopes `admin` + `global`); a tenant's own admin may only read
//! its own tenant. Every change is written with its audit-log entry in one transaction (actions
//! `tenant.created`, `tenant.updated`, `tenant.suspended`, `tenant.reactivated`). A suspended
//! tenant's keys and tokens are refused with `403 tenant_suspended` (see `auth`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use photo_core::{ErrorCode, TenantId};
use photo_db::{NewAuditEntry, Tenant, TenantChange, TenantStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{Caller, insufficient_scope};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 100;

/// `POST /admin/tenants` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// The tenant's id: `[a-z0-9][a-z0-9_-]{0,62}`.
    #[schema(example = "acme")]
    pub tenant_id: String,
    /// A name for people (≤ 100 characters, no control characters).
    #[schema(example = "Acme Corp")]
    pub display_name: Option<String>,
    /// `active` (default) or `suspended`.
    pub status: Option<String>,
}

/// `PATCH /admin/tenants/{tenant_id}` body; absent fields stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantRequest {
    /// A new display name; `""` clears it.
    pub display_name: Option<String>,
    /// `active` or `suspended`.
    pub status: Option<String>,
}

/// A tenant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    /// Its id.
    pub tenant_id: String,
    /// A name for people.
    pub display_name: Option<String>,
    /// `active` or `suspended`.
    pub status: String,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        Self {
            tenant_id: t.tenant.to_string(),
            display_name: t.display_name.clone(),
            status: t.status.as_str().into(),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// `GET /admin/tenants` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantList {
    /// Tenants by id: every tenant for a global admin, the caller's own otherwise.
    pub tenants: Vec<TenantView>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::InvalidRequest,
        detail,
    )
}

fn require_global(caller: &Caller) -> ApiResult<()> {
    if caller.is_global_admin() {
        Ok(())
    } else {
        Err(insufficient_scope(
            "only a global admin (scopes admin + global) may create or change tenants",
        )
        .with("required_scope", "global"))
    }
}

/// The tenant a path names: a tenant's own admin may name only its own (anything else is 403,
/// whether it exists or not); a malformed id names no tenant (404).
fn tenant_in_path(caller: &Caller, raw: &str) -> ApiResult<TenantId> {
    if !caller.is_global_admin() && raw != caller.tenant.as_str() {
        return Err(insufficient_scope(
            "only a global admin (scopes admin + global) may act on another tenant",
        ));
    }
    TenantId::parse(raw).map_err(|_| ApiError::not_found("tenant"))
}

/// A display name as stored: trimmed, ≤ 100 characters, no control characters; empty → none.
pub fn clean_display_name(name: Option<String>) -> ApiResult<Option<String>> {
    let Some(name) = name else { return Ok(None) };
    let name = name.trim();
    if name.is_empty() {
        return Ok(None);
    }
    if name.chars().count() > MAX_DISPLAY_NAME || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "display_name must be at most {MAX_DISPLAY_NAME} characters without control characters"
        )));
    }
    Ok(Some(name.to_owned()))
}

fn parse_status(s: &str) -> ApiResult<TenantStatus> {
    TenantStatus::parse(s).ok_or_else(|| invalid("status must be active or suspended"))
}

fn audit(caller: &Caller, action: &str, target: &TenantId) -> NewAuditEntry {
    NewAuditEntry {
        at: crate::routes::admin::now(),
        actor: caller.key_id.clone(),
        actor_tenant: Some(caller.tenant.clone()),
        action: action.into(),
        target: Some(target.to_string()),
        detail: json!({}),
    }
}

/// Creates a tenant (global admins). Keys made for an unknown tenant create it too.
#[utoipa::path(post, path = "/admin/tenants", tag = "admin", request_body = CreateTenantRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The tenant", body = TenantView),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 403, description = "Not a global admin (`insufficient_scope`)", body = Problem),
        (status = 409, description = "The tenant exists (`already_exists`)", body = Problem),
        (status = 422, description = "Bad id, name or status (`invalid_request`)", body = Problem)))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateTenantRequest>,
) -> ApiResult<(StatusCode, Json<TenantView>)> {
    require_global(&caller)?;
    let id = TenantId::parse(&req.tenant_id).map_err(|e| invalid(e.to_string()))?;
    let status = req
        .status
        .as_deref()
        .map(parse_status)
        .transpose()?
        .unwrap_or(TenantStatus::Active);
    if status == TenantStatus::Suspended && id == caller.tenant {
        return Err(self_suspension());
    }
    let now = photo_db::now_ms();
    let t = Tenant {
        tenant: id.clone(),
        display_name: clean_display_name(req.display_name)?,
        status,
        created_at: now,
        updated_at: now,
    };
    let mut entry = audit(&caller, "tenant.created", &id);
    entry.detail = json!({"display_name": t.display_name, "status": status.as_str()});
    if !st.repo.create_tenant(&t, &entry).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AlreadyExists,
            format!("tenant {id} exists; change it with PATCH /admin/tenants/{id}"),
        ));
    }
    tracing::info!(tenant = %id, by = %caller.key_id, "tenant created");
    Ok((StatusCode::CREATED, Json(TenantView::from(&t))))
}

/// Lists tenants: every tenant for a global admin, the caller's own for a tenant's admin.
#[utoipa::path(get, path = "/admin/tenants", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Tenants by id", body = TenantList),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 403, description = "Not an admin (`insufficient_scope`)", body = Problem)))]
pub async fn list(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<TenantList>> {
    let only = (!caller.is_global_admin()).then(|| caller.tenant.clone());
    let tenants = st.repo.list_tenants(only.as_ref()).await?;
    Ok(Json(TenantList {
        tenants: tenants.iter().map(TenantView::from).collect(),
    }))
}

/// One tenant: any for a global admin, its own for a tenant's admin.
#[utoipa::path(get, path = "/admin/tenants/{tenant_id}", tag = "admin",
    params(("tenant_id" = String, Path, description = "The tenant's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 403, description = "Not an admin, or another tenant without `global` (`insufficient_scope`)", body = Problem),
        (status = 404, description = "No such tenant", body = Problem)))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Path(tenant_id): Path<String>,
) -> ApiResult<Json<TenantView>> {
    let id = tenant_in_path(&caller, &tenant_id)?;
    let t = st
        .repo
        .get_tenant(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(Json(TenantView::from(&t)))
}

fn self_suspension() -> ApiError {
    invalid(
        "a global admin cannot suspend its own tenant (it would lock itself out); use another \
         global admin or `photo-api tenants suspend`",
    )
}

async fn change(
    st: &AppState,
    caller: &Caller,
    tenant_id: &str,
    change: TenantChange,
    action: &str,
) -> ApiResult<Json<TenantView>> {
    require_global(caller)?;
    let id = tenant_in_path(caller, tenant_id)?;
    if change.status == Some(TenantStatus::Suspended) && id == caller.tenant {
        return Err(self_suspension());
    }
    let (t, changed) = st
        .repo
        .update_tenant(
            &id,
            &change,
            photo_db::now_ms(),
            &audit(caller, action, &id),
        )
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    if changed {
        tracing::info!(tenant = %id, by = %caller.key_id, action, "tenant changed");
    }
    Ok(Json(TenantView::from(&t)))
}

/// Changes a tenant's display name and/or status (global admins). A change to the values it
/// already has is answered the same and records nothing.
#[utoipa::path(patch, path = "/admin/tenants/{tenant_id}", tag = "admin",
    params(("tenant_id" = String, Path, description = "The tenant's id")),
    request_body = UpdateTenantRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant as it is now", body = TenantView),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 403, description = "Not a global admin (`insufficient_scope`)", body = Problem),
        (status = 404, description = "No such tenant", body = Problem),
        (status = 422, description = "Bad name or status, or suspending the caller's own tenant (`invalid_request`)", body = Problem)))]
pub async fn update(
    State(st): State<AppState>,
    caller: Caller,
    Path(tenant_id): Path<String>,
    ApiJson(req): ApiJson<UpdateTenantRequest>,
) -> ApiResult<Json<TenantView>> {
    require_global(&caller)?;
    let c = TenantChange {
        display_name: req
            .display_name
            .map(|n| clean_display_name(Some(n)))
            .transpose()?,
        status: req.status.as_deref().map(parse_status).transpose()?,
    };
    change(&st, &caller, &tenant_id, c, "tenant.updated").await
}

/// Suspends a tenant at once (global admins): every request with one of its keys or tokens is
/// then `403 tenant_suspended`. Idempotent.
#[utoipa::path(post, path = "/admin/tenants/{tenant_id}/suspend", tag = "admin",
    params(("tenant_id" = String, Path, description = "The tenant's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant, now suspended", body = TenantView),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 403, description = "Not a global admin (`insufficient_scope`)", body = Problem),
        (status = 404, description = "No such tenant", body = Problem),
        (status = 422, description = "The caller's own tenant (`invalid_request`)", body = Problem)))]
pub async fn suspend(
    State(st): State<AppState>,
    caller: Caller,
    Path(tenant_id): Path<String>,
) -> ApiResult<Json<TenantView>> {
    let c = TenantChange {
        status: Some(TenantStatus::Suspended),
        ..Default::default()
    };
    change(&st, &caller, &tenant_id, c, "tenant.suspended").await
}

/// Reactivates a suspended tenant (global admins); its keys and tokens work again at once.
/// Idempotent.
#[utoipa::path(post, path = "/admin/tenants/{tenant_id}/reactivate", tag = "admin",
    params(("tenant_id" = String, Path, description = "The tenant's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant, now active", body = TenantView),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 403, description = "Not a global admin (`insufficient_scope`)", body = Problem),
        (status = 404, description = "No such tenant", body = Problem)))]
pub async fn reactivate(
    State(st): State<AppState>,
    caller: Caller,
    Path(tenant_id): Path<String>,
) -> ApiResult<Json<TenantView>> {
    let c = TenantChange {
        status: Some(TenantStatus::Active),
        ..Default::default()
    };
    change(&st, &caller, &tenant_id, c, "tenant.reactivated").await
}
