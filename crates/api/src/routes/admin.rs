//! The admin API: API keys and the audit log. Every route here needs the `admin` scope (see
//! `auth::required_scope`). An admin manages the keys of its own tenant; a *global* admin (scopes
//! `admin` + `global`: the bootstrap `API_KEY`, the key generated on first start) manages every
//! tenant's and names the tenant in the request. Nothing here ever takes the tenant from the
//! request for anyone else: a non-global admin naming another tenant is refused with 403.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use photo_core::{ErrorCode, Scope, TenantId};
use photo_db::{ApiKeyRecord, AuditEntry, NewAuditEntry};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{Caller, insufficient_scope, new_key_record};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

/// Longest key name.
pub const MAX_KEY_NAME: usize = 100;
/// Largest page of `GET /admin/audit`.
pub const MAX_AUDIT_PAGE: u32 = 500;

/// `POST /admin/keys` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// A label for people (1..=100 characters, no control characters).
    #[schema(example = "ci uploader")]
    pub name: Option<String>,
    /// What the key may do: `read`, `write`, `admin`, `global`. Never more than the caller
    /// holds.
    #[schema(example = json!(["read", "write"]))]
    pub scopes: Vec<String>,
    /// Lifetime from now, e.g. `30d`, `12h` (at most one of this and `expires_at`).
    #[schema(example = "30d")]
    pub expires_in: Option<String>,
    /// Expiry as an RFC 3339 time in the future.
    pub expires_at: Option<DateTime<Utc>>,
    /// The tenant the key acts for; only a global admin may name one other than its own.
    pub tenant: Option<String>,
}

/// A key as listed (never its secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// Public id (the `<id>` of `pk_<id>_<secret>`).
    pub key_id: String,
    /// The tenant it acts for.
    pub tenant: String,
    /// Label.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// `active`, `revoked` or `expired`.
    pub status: String,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last successful use (recorded asynchronously).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<&ApiKeyRecord> for KeyView {
    fn from(k: &ApiKeyRecord) -> Self {
        let status = if k.revoked_at.is_some() {
            "revoked"
        } else if k.expires_at.is_some_and(|e| e <= Utc::now()) {
            "expired"
        } else {
            "active"
        };
        Self {
            key_id: k.key_id.clone(),
            tenant: k.tenant.to_string(),
            name: k.name.clone(),
            scopes: k.scopes.clone(),
            status: status.into(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// A new key: `key` is shown this once and cannot be recovered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The whole key, `pk_<id>_<secret>`; send it as `Authorization: Bearer <key>`.
    pub key: String,
    /// The key's description.
    #[serde(flatten)]
    pub view: KeyView,
}

/// `GET /admin/keys` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    /// Keys, oldest first.
    pub keys: Vec<KeyView>,
}

/// Tenant filter of the admin lists.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TenantQuery {
    /// Global admins: only this tenant's (default: every tenant's). Others: their own tenant
    /// only; naming another is refused.
    pub tenant: Option<String>,
}

/// `GET /admin/audit` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// As for `/admin/keys`.
    pub tenant: Option<String>,
    /// Only entries older than this `seq` (the previous page's `next_before`).
    pub before: Option<i64>,
    /// Page size, 1..=500 (default 100).
    pub limit: Option<u32>,
}

/// One audit entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    /// Position in the log.
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// The tenant acted upon.
    pub tenant: String,
    /// Who: a key id, `bootstrap`, `jwt:<subject>` or `cli`.
    pub actor: String,
    /// The actor's tenant.
    pub actor_tenant: Option<String>,
    /// `key.created`, `key.revoked`, `tenant.created`, `tenant.updated`, `tenant.suspended` or
    /// `tenant.reactivated`.
    pub action: String,
    /// The key id or tenant id acted upon.
    pub target: Option<String>,
    /// Facts of the action (name, scopes, expiry).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<AuditEntry> for AuditView {
    fn from(a: AuditEntry) -> Self {
        Self {
            seq: a.seq,
            at: a.entry.at,
            tenant: a.tenant.to_string(),
            actor: a.entry.actor,
            actor_tenant: a.entry.actor_tenant.map(|t| t.to_string()),
            action: a.entry.action,
            target: a.entry.target,
            detail: a.entry.detail,
        }
    }
}

/// A page of the audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditView>,
    /// Pass as `before` for the next page; null on the last one.
    pub next_before: Option<i64>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::InvalidRequest,
        detail,
    )
}

/// The tenant an admin request acts on: the caller's own, or — for a global admin only — the one
/// it names. `None` means "every tenant" (a global admin's unfiltered list).
fn target_tenant(caller: &Caller, named: Option<&str>) -> ApiResult<Option<TenantId>> {
    if !caller.is_global_admin() {
        // Compared as given: any other name, valid or not, is another tenant's business.
        return match named {
            Some(t) if t != caller.tenant.as_str() => Err(insufficient_scope(
                "only a global admin (scopes admin + global) may act on another tenant",
            )),
            _ => Ok(Some(caller.tenant.clone())),
        };
    }
    named
        .map(|t| TenantId::parse(t).map_err(|e| invalid(e.to_string())))
        .transpose()
}

/// A key name as stored: trimmed, 1..=100 characters, no control characters.
pub fn clean_key_name(name: Option<String>) -> ApiResult<String> {
    let name = name.unwrap_or_default().trim().to_owned();
    if name.is_empty() {
        return Ok("unnamed".into());
    }
    if name.chars().count() > MAX_KEY_NAME || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "name must be at most {MAX_KEY_NAME} characters without control characters"
        )));
    }
    Ok(name)
}

/// Now, to the microsecond: what PostgreSQL stores, so an answer built from the values written
/// equals what a later read returns.
pub fn now() -> DateTime<Utc> {
    use chrono::DurationRound;
    let t = Utc::now();
    t.duration_trunc(chrono::Duration::microseconds(1))
        .unwrap_or(t)
}

fn audit(caller: &Caller, action: &str, target: &str, detail: serde_json::Value) -> NewAuditEntry {
    NewAuditEntry {
        at: now(),
        actor: caller.key_id.clone(),
        actor_tenant: Some(caller.tenant.clone()),
        action: action.into(),
        target: Some(target.into()),
        detail,
    }
}

/// Creates an API key. The answer holds the whole key, shown this once; only its SHA-256 is
/// stored. The new key's scopes must be ones the caller holds.
#[utoipa::path(post, path = "/admin/keys", tag = "admin", request_body = CreateKeyRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The key (shown once)", body = CreatedKey),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 403, description = "Not an admin, a scope the caller lacks, or another tenant without `global` (`insufficient_scope`)", body = Problem),
        (status = 422, description = "Unknown scope, bad name, tenant or expiry (`invalid_request`)", body = Problem)))]
pub async fn create_key(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let tenant = target_tenant(&caller, req.tenant.as_deref())?
        .ok_or_else(|| invalid("a global admin must name the key's tenant"))?;
    let scopes = Scope::parse_list(&req.scopes.join(",")).map_err(|e| invalid(e.to_string()))?;
    if scopes.is_empty() {
        return Err(invalid(
            "scopes must name at least one of read, write, admin",
        ));
    }
    let held = caller.scope_set();
    if let Some(s) = scopes.iter().find(|s| !held.contains(s)) {
        return Err(insufficient_scope(format!(
            "cannot grant '{s}': the caller does not hold it"
        )));
    }
    let now = now();
    let expires_at = match (req.expires_in.as_deref(), req.expires_at) {
        (Some(_), Some(_)) => return Err(invalid("give expires_in or expires_at, not both")),
        (Some(d), None) => {
            let d = humantime::parse_duration(d)
                .ok()
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .filter(|d| *d > chrono::Duration::zero())
                .ok_or_else(|| invalid("expires_in must be a positive duration such as 30d"))?;
            Some(
                now.checked_add_signed(d)
                    .ok_or_else(|| invalid("expires_in is too long"))?,
            )
        }
        (None, Some(t)) if t <= now => return Err(invalid("expires_at is in the past")),
        (None, t) => t,
    };
    let name = clean_key_name(req.name)?;
    let (generated, rec) = new_key_record(tenant, name, &scopes, expires_at, now);
    let detail = json!({
        "name": rec.name,
        "scopes": rec.scopes,
        "expires_at": rec.expires_at,
    });
    st.repo
        .create_api_key(&rec, &audit(&caller, "key.created", &rec.key_id, detail))
        .await?;
    tracing::info!(key_id = %rec.key_id, tenant = %rec.tenant, by = %caller.key_id, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: generated.key,
            view: KeyView::from(&rec),
        }),
    ))
}

/// Lists API keys (never their secrets): the caller's tenant's, or for a global admin every
/// tenant's (or the one named by `tenant`).
#[utoipa::path(get, path = "/admin/keys", tag = "admin", params(TenantQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Keys", body = KeyList),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 403, description = "Not an admin, or another tenant without `global` (`insufficient_scope`)", body = Problem)))]
pub async fn list_keys(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> ApiResult<Json<KeyList>> {
    let tenant = target_tenant(&caller, q.tenant.as_deref())?;
    let keys = st.repo.list_api_keys(tenant.as_ref()).await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(KeyView::from).collect(),
    }))
}

/// Revokes an API key at once. Idempotent: revoking a revoked key answers the same. Another
/// tenant's key is `404` (unless the caller is a global admin).
#[utoipa::path(delete, path = "/admin/keys/{key_id}", tag = "admin",
    params(("key_id" = String, Path, description = "The key's public id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The key, now revoked", body = KeyView),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 403, description = "Not an admin (`insufficient_scope`)", body = Problem),
        (status = 404, description = "No such key (or another tenant's)", body = Problem)))]
pub async fn revoke_key(
    State(st): State<AppState>,
    caller: Caller,
    Path(key_id): Path<String>,
) -> ApiResult<Json<KeyView>> {
    if key_id.len() != 12 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found("key"));
    }
    let scope = (!caller.is_global_admin()).then(|| caller.tenant.clone());
    let rec = st
        .repo
        .revoke_api_key(
            scope.as_ref(),
            &key_id,
            &audit(&caller, "key.revoked", &key_id, json!({})),
        )
        .await?
        .ok_or_else(|| ApiError::not_found("key"))?;
    tracing::info!(key_id = %rec.key_id, tenant = %rec.tenant, by = %caller.key_id, "API key revoked");
    Ok(Json(KeyView::from(&rec)))
}

/// The audit log of admin actions, newest first: the caller's tenant's, or for a global admin
/// every tenant's (or the one named by `tenant`).
#[utoipa::path(get, path = "/admin/audit", tag = "admin", params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of entries", body = AuditPage),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 403, description = "Not an admin, or another tenant without `global` (`insufficient_scope`)", body = Problem),
        (status = 422, description = "Bad limit or tenant (`invalid_request`)", body = Problem)))]
pub async fn audit_log(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let tenant = target_tenant(&caller, q.tenant.as_deref())?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
        return Err(invalid(format!("limit must be 1..={MAX_AUDIT_PAGE}")));
    }
    let entries = st.repo.list_audit(tenant.as_ref(), q.before, limit).await?;
    let next_before = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditPage {
        entries: entries.into_iter().map(AuditView::from).collect(),
        next_before,
    }))
}
