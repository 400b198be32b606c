//! JWT bearer tokens, as an alternative to API keys: HS256 with a shared secret, RS256/ES256
//! against a JWKS URL (cached; fetched again when a token names an unknown `kid`). Issuer,
//! audience and expiry are checked; the tenant comes from a configurable claim (a dotted path,
//! so Supabase's `sub` or `app_metadata.tenant_id` both work), scopes from another.
//!
//! Algorithm confusion is impossible by construction: HS256 tokens are checked only against
//! the configured secret, and RS256/ES256 tokens only against a JWKS key of the matching type
//! (and `alg`, when the JWK names one); `none` and every other algorithm are refused.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use photo_core::{Scope, TenantId};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

/// Token settings.
#[derive(Clone)]
pub struct JwtSettings {
    /// Shared secret for HS256 tokens.
    pub hs256_secret: Option<Vec<u8>>,
    /// Where the RS256/ES256 public keys are published.
    pub jwks_url: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Accepted `aud` values, when set (a token must name one of them).
    pub audience: Vec<String>,
    /// Dotted path of the claim holding the tenant id (e.g. `sub`, `app_metadata.tenant_id`).
    pub tenant_claim: String,
    /// Dotted path of the claim holding scopes: a space/comma separated string or an array.
    pub scope_claim: String,
    /// Scopes of a token whose scope claim is missing or names none of ours.
    pub default_scopes: Vec<Scope>,
    /// When not empty, the token's `role` claim must be one of these (e.g. Supabase's
    /// `authenticated`, refusing its public `anon` tokens).
    pub allowed_roles: Vec<String>,
    /// How long fetched keys are trusted before they are fetched again.
    pub jwks_cache_ttl: Duration,
    /// Least time between two fetches caused by unknown `kid`s (so random `kid`s cannot turn
    /// requests into a flood of fetches).
    pub jwks_min_refresh: Duration,
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwks_url", &self.jwks_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("tenant_claim", &self.tenant_claim)
            .field("scope_claim", &self.scope_claim)
            .field("default_scopes", &self.default_scopes)
            .field("allowed_roles", &self.allowed_roles)
            .finish()
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// The tenant from the tenant claim.
    pub tenant: TenantId,
    /// `sub`, when present.
    pub subject: Option<String>,
    /// Granted scopes (`global` is never taken from a token).
    pub scopes: Vec<Scope>,
}

/// Why a token was refused. The message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

fn err(s: impl Into<String>) -> TokenError {
    TokenError(s.into())
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, (DecodingKey, Option<Algorithm>, Family)>,
    fetched: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
}

/// Verifies bearer JWTs.
pub struct JwtVerifier {
    settings: JwtSettings,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Serialises fetches, so concurrent requests with a new `kid` cause one fetch.
    fetching: Mutex<()>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Whether a bearer credential looks like a JWT (three base64url parts) rather than an API key.
pub fn looks_like_jwt(token: &str) -> bool {
    !token.starts_with("pk_")
        && token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

/// The value at a dotted path of a claims object.
fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(claims, |v, seg| v.get(seg))
}

impl JwtVerifier {
    /// A verifier; keys are fetched on first use.
    pub fn new(settings: JwtSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            settings,
            http,
            cache: RwLock::new(KeyCache::default()),
            fetching: Mutex::new(()),
        }
    }

    /// Checks a token and extracts who it speaks for.
    pub async fn verify(&self, token: &str) -> Result<TokenIdentity, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| err("the token is malformed"))?;
        let (key, alg) = match header.alg {
            Algorithm::HS256 => {
                let secret = self
                    .settings
                    .hs256_secret
                    .as_ref()
                    .ok_or_else(|| err("HS256 tokens are not accepted here"))?;
                (DecodingKey::from_secret(secret), Algorithm::HS256)
            }
            Algorithm::RS256 | Algorithm::ES256 => {
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| err("the token has no 'kid'"))?;
                (self.key_for(kid, header.alg).await?, header.alg)
            }
            other => return Err(err(format!("algorithm {other:?} is not accepted"))),
        };
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY_SECONDS;
        v.set_required_spec_claims(&["exp"]);
        v.validate_nbf = true;
        if let Some(iss) = &self.settings.issuer {
            v.set_issuer(&[iss]);
            v.required_spec_claims.insert("iss".into());
        }
        if self.settings.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.settings.audience);
            v.required_spec_claims.insert("aud".into());
        }
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            err(match e.kind() {
                K::ExpiredSignature => "the token has expired",
                K::ImmatureSignature => "the token is not valid yet",
                K::InvalidIssuer => "the token's issuer is not accepted",
                K::InvalidAudience => "the token's audience is not accepted",
                K::InvalidSignature => "the token's signature is not valid",
                K::MissingRequiredClaim(_) => "the token lacks a required claim (exp, iss or aud)",
                _ => "the token is not valid",
            })
        })?;
        self.identity(&data.claims)
    }

    fn identity(&self, claims: &Value) -> Result<TokenIdentity, TokenError> {
        let s = &self.settings;
        if !s.allowed_roles.is_empty() {
            let role = claims.get("role").and_then(Value::as_str).unwrap_or("");
            if !s.allowed_roles.iter().any(|r| r == role) {
                return Err(err("the token's role is not accepted"));
            }
        }
        let tenant = match claim(claims, &s.tenant_claim) {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(err(format!(
                    "the token has no '{}' claim naming its tenant",
                    s.tenant_claim
                )));
            }
        };
        let tenant = TenantId::parse(&tenant.to_ascii_lowercase())
            .map_err(|e| err(format!("the token's tenant claim is not usable: {e}")))?;
        let names: Vec<String> = match claim(claims, &s.scope_claim) {
            Some(Value::String(v)) => v.split([' ', ',']).map(str::to_owned).collect(),
            Some(Value::Array(v)) => v
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let mut scopes: Vec<Scope> = names
            .iter()
            .filter_map(|n| Scope::parse(n).ok())
            .filter(|s| *s != Scope::Global)
            .collect();
        if scopes.is_empty() {
            scopes = s.default_scopes.clone();
        }
        scopes.sort();
        scopes.dedup();
        Ok(TokenIdentity {
            tenant,
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            scopes,
        })
    }

    async fn cached(&self, kid: &str, alg: Algorithm) -> Option<Result<DecodingKey, TokenError>> {
        let c = self.cache.read().await;
        let fresh = c
            .fetched
            .is_some_and(|t| t.elapsed() < self.settings.jwks_cache_ttl);
        if !fresh {
            return None;
        }
        let (key, jwk_alg, family) = c.keys.get(kid)?;
        let want = if alg == Algorithm::RS256 {
            Family::Rsa
        } else {
            Family::Ec
        };
        if *family != want || jwk_alg.is_some_and(|a| a != alg) {
            return Some(Err(err("the token's algorithm does not match its key")));
        }
        Some(Ok(key.clone()))
    }

    async fn key_for(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, TokenError> {
        if let Some(r) = self.cached(kid, alg).await {
            return r;
        }
        let url = self
            .settings
            .jwks_url
            .as_deref()
            .ok_or_else(|| err("RS256/ES256 tokens are not accepted here (no JWKS URL)"))?;
        {
            let _one = self.fetching.lock().await;
            // Another request may have fetched while we waited.
            if let Some(r) = self.cached(kid, alg).await {
                return r;
            }
            let recent = {
                let c = self.cache.read().await;
                let ttl_ok = c
                    .fetched
                    .is_some_and(|t| t.elapsed() < self.settings.jwks_cache_ttl);
                ttl_ok
                    && c.fetched
                        .is_some_and(|t| t.elapsed() < self.settings.jwks_min_refresh)
            };
            if !recent {
                match self.fetch(url).await {
                    Ok(keys) => {
                        let mut c = self.cache.write().await;
                        c.keys = keys;
                        c.fetched = Some(Instant::now());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "fetching the JWKS failed");
                        return Err(err("the token's signing keys are unavailable; retry"));
                    }
                }
            }
        }
        self.cached(kid, alg)
            .await
            .unwrap_or_else(|| Err(err("the token's 'kid' is not a known signing key")))
    }

    async fn fetch(
        &self,
        url: &str,
    ) -> Result<HashMap<String, (DecodingKey, Option<Algorithm>, Family)>, String> {
        let res = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("JWKS answered {}", res.status()));
        }
        let bytes = res.bytes().await.map_err(|e| e.to_string())?;
        if bytes.len() > 1 << 20 {
            return Err("JWKS document over 1 MiB".into());
        }
        let set: JwkSet = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let mut out = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::EllipticCurve(p)
                    if p.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
                {
                    Family::Ec
                }
                _ => continue,
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            match DecodingKey::from_jwk(jwk) {
                Ok(k) => {
                    out.insert(kid, (k, alg, family));
                }
                Err(e) => tracing::warn!(kid, error = %e, "skipping an unusable JWKS key"),
            }
        }
        tracing::info!(keys = out.len(), "fetched the JWKS");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used)]
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn settings() -> JwtSettings {
        JwtSettings {
            hs256_secret: Some(b"0123456789abcdef0123456789abcdef".to_vec()),
            jwks_url: None,
            issuer: Some("https://issuer.test".into()),
            audience: vec!["photo-api".into()],
            tenant_claim: "app_metadata.tenant_id".into(),
            scope_claim: "scope".into(),
            default_scopes: vec![Scope::Read],
            allowed_roles: vec!["authenticated".into()],
            jwks_cache_ttl: Duration::from_secs(600),
            jwks_min_refresh: Duration::from_secs(0),
        }
    }

    fn hs(claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap()
    }

    fn exp() -> i64 {
        chrono::Utc::now().timestamp() + 600
    }

    #[tokio::test]
    async fn claims_map_to_tenant_and_scopes() {
        let v = JwtVerifier::new(settings());
        let base = json!({"iss": "https://issuer.test", "aud": "photo-api", "exp": exp(),
            "sub": "u1", "role": "authenticated", "app_metadata": {"tenant_id": "Acme"}});
        let id = v.verify(&hs(base.clone())).await.unwrap();
        assert_eq!(id.tenant.as_str(), "acme");
        assert_eq!(id.scopes, vec![Scope::Read], "default scopes");
        assert_eq!(id.subject.as_deref(), Some("u1"));
        let mut with = base.clone();
        with["scope"] = json!("write read global openid");
        assert_eq!(
            v.verify(&hs(with)).await.unwrap().scopes,
            vec![Scope::Read, Scope::Write],
            "global never comes from a token; unknown names are ignored"
        );
        let mut anon = base.clone();
        anon["role"] = json!("anon");
        assert!(v.verify(&hs(anon)).await.is_err());
        let mut no_tenant = base.clone();
        no_tenant["app_metadata"] = json!({});
        assert!(v.verify(&hs(no_tenant)).await.is_err());
        let mut bad_tenant = base;
        bad_tenant["app_metadata"]["tenant_id"] = json!("../b");
        assert!(v.verify(&hs(bad_tenant)).await.is_err());
    }

    #[tokio::test]
    async fn unsigned_and_unconfigured_algorithms_are_refused() {
        let v = JwtVerifier::new(settings());
        // alg "none": header {"alg":"none"}.
        let none = "eyJhbGciOiJub25lIn0.eyJleHAiOjk5OTk5OTk5OTl9.";
        assert!(v.verify(none).await.is_err());
        let rs_header = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJleHAiOjk5OTk5OTk5OTl9.c2ln";
        let e = v.verify(rs_header).await.unwrap_err();
        assert!(e.0.contains("no JWKS URL"), "{e}");
        assert!(looks_like_jwt("a.b.c") && !looks_like_jwt("pk_abc_def") && !looks_like_jwt("a.b"));
    }
}
