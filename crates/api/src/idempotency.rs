//! `Idempotency-Key` on creating requests (`POST /jobs`, `POST /uploads/init`, `POST /batches`):
//! the same key and body give the same result, however often and however concurrently they are
//! sent; the same key with another body is a `422 idempotency_key_reused`.
//!
//! Keys are scoped by tenant and route. The first request reserves the key in the database
//! (a unique row), runs, and stores its response; a request that finds the key reserved waits
//! for that response and replays it (header `Idempotent-Replayed: true`). A request that fails
//! releases its reservation, so the client can try again with the same key. Responses are kept
//! for `PHOTO_API_IDEMPOTENCY_TTL`.

use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use photo_core::ErrorCode;
use photo_db::IdempotencyScope;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// How long a request waits for a concurrent one holding the same key to finish.
const WAIT: Duration = Duration::from_secs(20);
/// A reservation older than this whose request never finished (the process died) is taken over.
const STALE: Duration = Duration::from_secs(120);

/// What is stored for replay.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Stored {
    status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    body: serde_json::Value,
}

fn key_of(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(format!(
            "Idempotency-Key must be 1..={MAX_KEY_LEN} printable ASCII characters"
        ))
    };
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty() || s.len() > MAX_KEY_LEN || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

/// SHA-256 of the body as canonical JSON (object keys sorted, no whitespace), so the same body
/// written with its keys in another order is the same request.
fn body_hash(body: &serde_json::Value) -> String {
    fn canonical(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<_> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&m[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    canonical(body, &mut s);
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn replay(record_body: Option<&str>) -> ApiResult<Response> {
    let stored: Stored = record_body
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or_else(|| {
            ApiError::internal(
                "an idempotency record is unreadable",
                &std::io::Error::other("bad stored response"),
            )
        })?;
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut res = (status, Json(stored.body)).into_response();
    if let Some(loc) = stored.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    res.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(res)
}

/// Runs `run` at most once per (tenant, `scope`, `Idempotency-Key`): without the header it
/// simply runs; with it, a repeat of the same body replays the first response, another body
/// is `422 idempotency_key_reused`. `run` is only polled when this request does the work.
pub async fn idempotent<T, F>(
    st: &AppState,
    caller: &Caller,
    scope: &'static str,
    headers: &HeaderMap,
    body: &serde_json::Value,
    run: F,
) -> ApiResult<Response>
where
    T: Serialize,
    F: Future<Output = ApiResult<(StatusCode, HeaderMap, T)>>,
{
    let Some(key) = key_of(headers)? else {
        let (status, h, v) = run.await?;
        return Ok((status, h, Json(v)).into_response());
    };
    let hash = body_hash(body);
    let id = IdempotencyScope {
        tenant: &caller.tenant,
        scope,
        key: &key,
    };
    let ttl = chrono::Duration::from_std(st.cfg.idempotency_ttl).unwrap_or_default();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = Utc::now();
        let stale = now - chrono::Duration::from_std(STALE).unwrap_or_default();
        match st
            .repo
            .idempotency_reserve(&id, &hash, now, stale, now + ttl)
            .await?
        {
            None => break,
            Some(rec) if rec.request_sha256 != hash => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorCode::IdempotencyKeyReused,
                    "this Idempotency-Key was used with a different request body",
                ));
            }
            Some(rec) if rec.status_code.is_some() => {
                return replay(rec.response_body.as_deref());
            }
            Some(_) => {
                // Another request with this key is running: wait for its answer.
                if tokio::time::Instant::now() >= deadline {
                    let mut e = ApiError::new(
                        StatusCode::CONFLICT,
                        ErrorCode::IdempotencyKeyInProgress,
                        "a request with this Idempotency-Key is still running; retry",
                    );
                    e.retry_after = Some(1);
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }
    match run.await {
        Ok((status, h, v)) => {
            let body = serde_json::to_value(&v)
                .map_err(|e| ApiError::internal("serialising a response failed", &e))?;
            let stored = Stored {
                status: status.as_u16(),
                location: h
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .map(str::to_owned),
                body: body.clone(),
            };
            let text = serde_json::to_string(&stored)
                .map_err(|e| ApiError::internal("serialising a response failed", &e))?;
            if let Err(e) = st
                .repo
                .idempotency_complete(&id, status.as_u16(), &text)
                .await
            {
                // The work is done; a repeat would run it again once the reservation goes
                // stale. Log it; the client still gets its answer.
                tracing::error!(error = %e, "storing an idempotent response failed");
            }
            Ok((status, h, Json(body)).into_response())
        }
        Err(err) => {
            if let Err(e) = st.repo.idempotency_release(&id).await {
                tracing::warn!(error = %e, "releasing an idempotency key failed");
            }
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_key_order_and_whitespace_only() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"a":1,"b":{"y":[1,2],"x":"s"}}"#).unwrap_or_default();
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "b": {"x":"s", "y":[1, 2]}, "a": 1 }"#).unwrap_or_default();
        let c: serde_json::Value =
            serde_json::from_str(r#"{"a":1,"b":{"y":[2,1],"x":"s"}}"#).unwrap_or_default();
        assert_eq!(body_hash(&a), body_hash(&b));
        assert_ne!(body_hash(&a), body_hash(&c));
    }
}
