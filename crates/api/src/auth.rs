//! Bearer credentials and scopes. A key is `pk_<id>_<secret>`: the id finds the row, and the
//! SHA-256 of the whole key is compared in constant time. Keys carry 32 random bytes, so a fast
//! hash is the right tool (a password hash would only slow every request).
//!
//! Every route needs exactly one scope, decided here from the request alone
//! ([`required_scope`]): `admin` under `/admin`, `read` for `GET`/`HEAD`, `write` for anything
//! else. The [`Caller`] extractor authenticates *and* checks that scope, so a handler that takes
//! a `Caller` cannot forget the check, and a new route is covered the day it is added. It also
//! refuses every credential of a suspended tenant (`403 tenant_suspended`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use base64::Engine;
use chrono::{DateTime, Utc};
use photo_core::{ErrorCode, Scope, TenantId};
use photo_db::ApiKeyRecord;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The tenant every resource is scoped to.
    pub tenant: TenantId,
    /// Public id of the key (`bootstrap` for `API_KEY`, `jwt:<subject>` for a token).
    pub key_id: String,
    /// Granted scopes (`read`, `write`, `admin`, `global`).
    pub scopes: Vec<String>,
}

impl Caller {
    /// Whether the caller holds `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| s == scope.as_str())
    }

    /// The scopes as typed values (unknown stored names are ignored).
    pub fn scope_set(&self) -> Vec<Scope> {
        self.scopes
            .iter()
            .filter_map(|s| Scope::parse(s).ok())
            .collect()
    }

    /// An admin of every tenant (`admin` + `global`), rather than of its own only.
    pub fn is_global_admin(&self) -> bool {
        self.has(Scope::Admin) && self.has(Scope::Global)
    }
}

/// The scope a request needs: `admin` for `/admin` and everything under it, `read` for `GET`
/// and `HEAD`, `write` for every other method.
pub fn required_scope(method: &Method, path: &str) -> Scope {
    if path == "/admin" || path.starts_with("/admin/") {
        Scope::Admin
    } else if method == Method::GET || method == Method::HEAD {
        Scope::Read
    } else {
        Scope::Write
    }
}

/// 403 `insufficient_scope`.
pub fn insufficient_scope(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::InsufficientScope, detail)
}

/// SHA-256 of a key string.
pub fn key_sha256(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A freshly generated key: the full string (shown once) and its public id.
#[derive(Debug)]
pub struct GeneratedKey {
    /// `pk_<id>_<secret>`.
    pub key: String,
    /// `<id>`.
    pub key_id: String,
}

/// Generates a new random key.
pub fn generate_key() -> GeneratedKey {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let key_id = hex::encode(id);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    GeneratedKey {
        key: format!("pk_{key_id}_{secret}"),
        key_id,
    }
}

/// A new key for `tenant` and the record that stores it (only the hash of the secret). The
/// returned [`GeneratedKey::key`] is the one and only time the secret exists in clear.
pub fn new_key_record(
    tenant: TenantId,
    name: String,
    scopes: &[Scope],
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (GeneratedKey, ApiKeyRecord) {
    let k = generate_key();
    let rec = ApiKeyRecord {
        key_id: k.key_id.clone(),
        tenant,
        name,
        secret_sha256: hex::encode(key_sha256(&k.key)),
        scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        created_at: now,
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    (k, rec)
}

fn unauthenticated(detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, detail)
}

fn invalid() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::InvalidCredentials,
        "the API key is not valid",
    )
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthenticated(
                "missing Authorization header; send 'Authorization: Bearer <API key>'",
            ));
        };
        let value = value.to_str().map_err(|_| invalid())?;
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return Err(unauthenticated(
                "the Authorization header must use the Bearer scheme",
            ));
        };
        let caller = authenticate(token.trim(), state).await?;
        // The request span (and every log line in it) names the tenant from here on.
        tracing::Span::current().record("tenant", caller.tenant.as_str());
        ensure_tenant_active(state, &caller.tenant).await?;
        let needed = required_scope(&parts.method, parts.uri.path());
        if !caller.has(needed) {
            return Err(insufficient_scope(format!(
                "this route needs the '{needed}' scope; the credential has [{}]",
                caller.scopes.join(", ")
            ))
            .with("required_scope", needed.as_str()));
        }
        if let Some(rate) = state.edge.rate_for(needed) {
            let bucket = format!("cred:{}:{}:{needed}", caller.tenant, caller.key_id);
            let info = state
                .edge
                .limiter
                .check(&bucket, rate, std::time::Instant::now());
            if let Some(slot) = parts.extensions.get::<crate::edge::RateSlot>() {
                slot.set(info);
            }
            if let Some(secs) = info.retry_after {
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::RateLimited,
                    format!("too many '{needed}' requests for this credential; retry in {secs} s"),
                );
                e.retry_after = Some(secs);
                return Err(e);
            }
        }
        Ok(caller)
    }
}

/// 403 `tenant_suspended` when `tenant` is suspended. A tenant without a row (a JWT's tenant, or
/// `default` with only the bootstrap key) is active.
pub async fn ensure_tenant_active(state: &AppState, tenant: &TenantId) -> Result<(), ApiError> {
    if let Some(t) = state.repo.get_tenant(tenant).await?
        && t.status == photo_db::TenantStatus::Suspended
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::TenantSuspended,
            format!("tenant {tenant} is suspended; its keys and tokens are refused until a global admin reactivates it"),
        )
        .with("tenant", tenant.as_str()));
    }
    Ok(())
}

/// Checks a bearer credential (the bootstrap key, a stored API key or a JWT); no scope check.
async fn authenticate(token: &str, state: &AppState) -> Result<Caller, ApiError> {
    if let Some(v) = &state.jwt
        && crate::jwt::looks_like_jwt(token)
    {
        let id = v.verify(token).await.map_err(|e| {
            ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidCredentials, e.0)
        })?;
        return Ok(Caller {
            tenant: id.tenant,
            key_id: format!("jwt:{}", id.subject.as_deref().unwrap_or("-")),
            scopes: id.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        });
    }
    let digest = key_sha256(token);
    if let Some(boot) = &state.cfg.bootstrap_key_sha256
        && bool::from(boot.ct_eq(&digest))
    {
        return Ok(Caller {
            tenant: TenantId::default_tenant(),
            key_id: "bootstrap".into(),
            scopes: Scope::ALL.iter().map(|s| s.as_str().to_owned()).collect(),
        });
    }
    let Some(rest) = token.strip_prefix("pk_") else {
        return Err(invalid());
    };
    let Some((key_id, _)) = rest.split_once('_') else {
        return Err(invalid());
    };
    if key_id.len() != 12 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let Some(rec) = state.repo.find_api_key(key_id).await? else {
        return Err(invalid());
    };
    let stored = hex::decode(&rec.secret_sha256).unwrap_or_default();
    if !bool::from(stored.as_slice().ct_eq(&digest)) {
        return Err(invalid());
    }
    let now = Utc::now();
    if rec.revoked_at.is_some() || rec.expires_at.is_some_and(|e| e <= now) {
        return Err(invalid());
    }
    // Recording last use must not slow or fail the request.
    let repo = state.repo.clone();
    let id = rec.key_id.clone();
    tokio::spawn(async move {
        if let Err(e) = repo.touch_api_key(&id, now).await {
            tracing::debug!(error = %e, "could not record key use");
        }
    });
    Ok(Caller {
        tenant: rec.tenant,
        key_id: rec.key_id,
        scopes: rec.scopes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with(&format!("pk_{}_", a.key_id)));
        assert_eq!(a.key_id.len(), 12);
        assert!(a.key.len() > 50, "32 random bytes of secret");
        assert_ne!(key_sha256(&a.key), key_sha256(&b.key));
    }
}
