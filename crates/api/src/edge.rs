//! The security edge: token-bucket rate limits per credential (per scope) and per client
//! address, a cap on concurrent requests, URL and header size limits, CORS and the security
//! headers every response carries.
//!
//! Per-credential limits are applied by the [`crate::auth::Caller`] extractor (only it knows the
//! credential and the route's scope); it leaves what it decided in a [`RateSlot`] that
//! [`edge_layer`] turns into `RateLimit-*` headers on the way out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use photo_core::{ErrorCode, Scope};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// A rate: `capacity` requests per `per`, refilled continuously; bursts up to `capacity`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests per window (and the burst size).
    pub capacity: u32,
    /// The window.
    pub per: Duration,
}

impl FromStr for Rate {
    type Err = String;

    /// `N/s`, `N/min`, `N/h` (also `sec`, `second`, `m`, `minute`, `hour`).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a rate; use e.g. 600/min, 20/s, 10000/h or off");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let capacity: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if capacity == 0 {
            return Err(format!("{s:?}: the count must be at least 1 (or use off)"));
        }
        Ok(Rate { capacity, per })
    }
}

/// Parses a rate setting: a [`Rate`], or `off` for none.
pub fn parse_rate(s: &str) -> Result<Option<Rate>, String> {
    match s.trim() {
        "off" | "none" | "0" => Ok(None),
        other => other.parse().map(Some),
    }
}

/// Settings of the edge.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Per credential, for routes needing `read`.
    pub rate_read: Option<Rate>,
    /// Per credential, for routes needing `write`.
    pub rate_write: Option<Rate>,
    /// Per credential, for routes needing `admin`.
    pub rate_admin: Option<Rate>,
    /// Per client address, every request.
    pub rate_address: Option<Rate>,
    /// Requests served at once; beyond it 503 + Retry-After.
    pub max_concurrent: usize,
    /// Longest request target (path and query), bytes.
    pub max_url_bytes: usize,
    /// Largest total of request header names and values, bytes.
    pub max_header_bytes: usize,
    /// Allowed CORS origins, exactly as browsers send them; `*` = any (never with credentials).
    pub cors_origins: Vec<String>,
    /// Whether CORS responses allow credentials (cookies, client certificates).
    pub cors_credentials: bool,
    /// Send `Strict-Transport-Security` (the service is reached over TLS).
    pub hsts: bool,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            rate_read: None,
            rate_write: None,
            rate_admin: None,
            rate_address: None,
            max_concurrent: 1024,
            max_url_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            cors_origins: Vec::new(),
            cors_credentials: false,
            hsts: false,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// What one rate-limit check found; becomes the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy)]
pub struct RateInfo {
    /// The bucket's capacity.
    pub limit: u32,
    /// Whole requests left now.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset: u64,
    /// The window, seconds.
    pub window: u64,
    /// When refused: seconds until one request is allowed.
    pub retry_after: Option<u64>,
}

/// Token buckets by name.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Buckets kept before idle full ones are dropped.
const PRUNE_AT: usize = 100_000;

impl Limiter {
    /// Takes one token from `name`'s bucket at `rate`.
    pub fn check(&self, name: &str, rate: Rate, now: Instant) -> RateInfo {
        let cap = f64::from(rate.capacity);
        let per_sec = cap / rate.per.as_secs_f64();
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PRUNE_AT {
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_sec < cap
            });
        }
        let b = map.entry(name.to_owned()).or_insert(Bucket {
            tokens: cap,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(cap);
        b.last = now;
        let retry_after = if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            None
        } else {
            Some(((1.0 - b.tokens) / per_sec).ceil().max(1.0) as u64)
        };
        RateInfo {
            limit: rate.capacity,
            remaining: b.tokens.floor() as u32,
            reset: ((cap - b.tokens) / per_sec).ceil() as u64,
            window: rate.per.as_secs(),
            retry_after,
        }
    }
}

/// The edge's shared state.
#[derive(Debug)]
pub struct Edge {
    /// Settings.
    pub cfg: EdgeConfig,
    /// Per-credential and per-address buckets.
    pub limiter: Limiter,
    inflight: Arc<Semaphore>,
}

impl Edge {
    /// The edge for these settings.
    pub fn new(cfg: EdgeConfig) -> Self {
        let inflight = Arc::new(Semaphore::new(cfg.max_concurrent.max(1)));
        Self {
            cfg,
            limiter: Limiter::default(),
            inflight,
        }
    }

    /// The per-credential rate of routes needing `scope`.
    pub fn rate_for(&self, scope: Scope) -> Option<Rate> {
        match scope {
            Scope::Read => self.cfg.rate_read,
            Scope::Write => self.cfg.rate_write,
            Scope::Admin | Scope::Global => self.cfg.rate_admin,
        }
    }
}

impl Default for Edge {
    fn default() -> Self {
        Self::new(EdgeConfig::default())
    }
}

/// Where the credential's rate decision is left for the response headers.
#[derive(Debug, Clone, Default)]
pub struct RateSlot(Arc<Mutex<Option<RateInfo>>>);

impl RateSlot {
    /// Records a decision.
    pub fn set(&self, info: RateInfo) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(info);
    }
    fn get(&self) -> Option<RateInfo> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn rate_headers(h: &mut HeaderMap, i: &RateInfo) {
    h.insert("ratelimit-limit", HeaderValue::from(i.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(i.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(i.reset));
    if let Ok(v) = HeaderValue::from_str(&format!("{};w={}", i.limit, i.window)) {
        h.insert("ratelimit-policy", v);
    }
    if let Some(s) = i.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
}

/// 429 `rate_limited` with `Retry-After` and the `RateLimit-*` headers.
pub fn too_many(info: &RateInfo, what: &str) -> Response {
    let mut res = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimited,
        format!(
            "too many requests for this {what}; retry in {} s",
            info.retry_after.unwrap_or(1)
        ),
    )
    .into_response();
    rate_headers(res.headers_mut(), info);
    res
}

/// The outermost layer: concurrency cap, size limits, the per-address rate, then the
/// `RateLimit-*` and security headers on every response.
pub async fn edge_layer(State(edge): State<Arc<Edge>>, mut req: Request, next: Next) -> Response {
    let cfg = &edge.cfg;
    let mut res = 'res: {
        let Ok(_permit) = edge.inflight.clone().try_acquire_owned() else {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ServiceUnavailable,
                "the server is at its limit of concurrent requests; retry shortly",
            );
            e.retry_after = Some(1);
            break 'res e.into_response();
        };
        let target_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
        if target_len > cfg.max_url_bytes {
            break 'res ApiError::new(
                StatusCode::URI_TOO_LONG,
                ErrorCode::UriTooLong,
                format!("the request URL is longer than {} bytes", cfg.max_url_bytes),
            )
            .into_response();
        }
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if header_bytes > cfg.max_header_bytes {
            break 'res ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                ErrorCode::HeadersTooLarge,
                format!(
                    "the request headers are larger than {} bytes",
                    cfg.max_header_bytes
                ),
            )
            .into_response();
        }
        let mut address_info = None;
        if let (Some(rate), Some(ConnectInfo(addr))) = (
            cfg.rate_address,
            req.extensions().get::<ConnectInfo<SocketAddr>>(),
        ) {
            let info = edge
                .limiter
                .check(&format!("addr:{}", addr.ip()), rate, Instant::now());
            if info.retry_after.is_some() {
                break 'res too_many(&info, "client address");
            }
            address_info = Some(info);
        }
        let slot = RateSlot::default();
        req.extensions_mut().insert(slot.clone());
        let mut res = next.run(req).await;
        // The credential's bucket, when a credential was checked; else the address's.
        if let Some(info) = slot.get().or(address_info)
            && !res.headers().contains_key("ratelimit-limit")
        {
            rate_headers(res.headers_mut(), &info);
        }
        res
    };
    security_headers(res.headers_mut(), cfg.hsts);
    res
}

/// Headers on every response: no sniffing, no framing, no referrer, a CSP that allows nothing
/// but the docs page's inline style, and HSTS when the service is reached over TLS.
fn security_headers(h: &mut HeaderMap, hsts: bool) {
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if hsts {
        h.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
}

/// The CORS layer for `CORS_ORIGINS`: exact origins (or `*` without credentials), preflight
/// answered before authentication. `None` when no origin is configured (no CORS headers).
pub fn cors(cfg: &EdgeConfig) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if cfg.cors_origins.is_empty() {
        return None;
    }
    let origin = if cfg.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            cfg.cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    let layer = CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::HEAD,
            axum::http::Method::POST,
            axum::http::Method::PUT,
            axum::http::Method::PATCH,
            axum::http::Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            axum::http::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            axum::http::HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
            header::LOCATION,
            axum::http::HeaderName::from_static("ratelimit-limit"),
            axum::http::HeaderName::from_static("ratelimit-remaining"),
            axum::http::HeaderName::from_static("ratelimit-reset"),
            axum::http::HeaderName::from_static("ratelimit-policy"),
        ])
        .max_age(Duration::from_secs(600))
        .allow_credentials(cfg.cors_credentials);
    Some(layer)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(
            "600/min".parse::<Rate>().unwrap(),
            Rate {
                capacity: 600,
                per: Duration::from_secs(60)
            }
        );
        assert_eq!(parse_rate("off").unwrap(), None);
        for bad in ["600", "x/min", "10/day", "0/s", "-1/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn buckets_allow_a_burst_then_refill() {
        let l = Limiter::default();
        let rate = "3/min".parse::<Rate>().unwrap();
        let t0 = Instant::now();
        for left in [2, 1, 0] {
            let i = l.check("k", rate, t0);
            assert_eq!((i.remaining, i.retry_after), (left, None));
        }
        let refused = l.check("k", rate, t0);
        assert_eq!(refused.retry_after, Some(20), "one token per 20 s");
        assert_eq!(l.check("other", rate, t0).retry_after, None, "per name");
        // 20 s later one token is back (time is passed in, not slept).
        let later = l.check("k", rate, t0 + Duration::from_secs(20));
        assert_eq!(later.retry_after, None);
        assert_eq!(later.remaining, 0);
    }
}
