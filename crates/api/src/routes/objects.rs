//! Signed downloads of the local adapter.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::Utc;
use photo_core::{ErrorCode, ObjectKey};
use photo_storage::Bucket;
use photo_storage::local::{download_fields, download_fields_disposition};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiQuery;
use crate::state::AppState;

fn content_type_for(key: &ObjectKey) -> &'static str {
    match key.as_str().rsplit('.').next() {
        Some("jpg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("avif") => "image/avif",
        Some("tiff") => "image/tiff",
        Some("heic") => "image/heic",
        Some("heif") => "image/heif",
        _ => "application/octet-stream",
    }
}

/// Signature of a download URL.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DownloadQuery {
    /// Expiry, Unix seconds.
    pub expires: String,
    /// Hex HMAC-SHA256.
    pub sig: String,
    /// `Content-Disposition` of the response, when signed into the URL.
    pub disposition: Option<String>,
}

/// Downloads a processed object through a signed URL (no API key). The signature covers the
/// bucket, key and expiry.
#[utoipa::path(get, path = "/objects/{bucket}/{key}", tag = "objects",
    params(("bucket" = String, Path, description = "`processed`"), ("key" = String, Path, description = "Object key"), DownloadQuery),
    responses(
        (status = 200, description = "The bytes, with their content type", content_type = "application/octet-stream"),
        (status = 403, description = "Bad signature (`invalid_signature`) or expired (`url_expired`)", body = Problem),
        (status = 404, description = "No such object", body = Problem)))]
pub async fn download(
    State(st): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
) -> ApiResult<Response> {
    let bad_sig = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::InvalidSignature,
            "the download URL's signature does not match",
        )
    };
    let bucket = Bucket::parse(&bucket).ok_or_else(bad_sig)?;
    let key = ObjectKey::parse(&key).map_err(|_| bad_sig())?;
    if key.is_quarantined() {
        // Nothing in quarantine is ever served, whatever the URL's signature says.
        return Err(ApiError::not_found("object"));
    }
    let signed = match &q.disposition {
        None => st
            .signer
            .verify(&download_fields(bucket, &key, &q.expires), &q.sig),
        Some(d) => st.signer.verify(
            &download_fields_disposition(bucket, &key, &q.expires, d),
            &q.sig,
        ),
    };
    if !signed {
        return Err(bad_sig());
    }
    let expires: i64 = q.expires.parse().map_err(|_| bad_sig())?;
    if Utc::now().timestamp() > expires {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::UrlExpired,
            "the download URL has expired; fetch the job again for a fresh one",
        ));
    }
    let obj = st.store.open(bucket, &key).await?;
    let mut res = Response::new(Body::from_stream(obj.body));
    let h = res.headers_mut();
    let ct = if bucket == Bucket::Processed {
        content_type_for(&key)
    } else {
        "application/octet-stream"
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(obj.meta.size));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    if let Some(d) = &q.disposition
        && let Ok(v) = HeaderValue::from_str(d)
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    } else if bucket == Bucket::Raw {
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
    }
    Ok(res)
}
