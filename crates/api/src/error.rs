//! The one error envelope: RFC 9457 problem+json with a stable `code` and the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use photo_core::ErrorCode;
use serde::Serialize;
use serde_json::{Map, Value};

tokio::task_local! {
    /// The current request's id, set by the request-id middleware for the handler's duration.
    pub static REQUEST_ID: String;
}

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: ErrorCode,
    /// Human explanation, safe to show.
    pub detail: String,
    /// Extra members (e.g. an upload's `status` and `reason`).
    pub extra: Map<String, Value>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
    /// Extra response headers (`Content-Range` of a 416, …).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// The problem document, as described in the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI identifying the problem type.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short summary of the status.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong, for humans.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
    /// The request's id (also in the `x-request-id` header).
    pub request_id: String,
}

impl ApiError {
    /// An error with the given status, code and detail.
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            extra: Map::new(),
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Adds a response header (ignored when the value is not a valid header value).
    pub fn with_header(mut self, name: header::HeaderName, value: impl AsRef<str>) -> Self {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.push((name, v));
        }
        self
    }

    /// 400 invalid_request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, detail)
    }

    /// 404 not_found. The same answer whether absent or another tenant's.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{what} not found"),
        )
    }

    /// 500 internal: the cause is logged with its chain, never sent.
    pub fn internal(context: &str, err: &dyn std::error::Error) -> Self {
        let mut chain = err.to_string();
        let mut src = err.source();
        while let Some(s) = src {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            src = s.source();
        }
        tracing::error!(error = %chain, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; see the server log for this request id",
        )
    }

    /// 503 service_unavailable with Retry-After.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServiceUnavailable,
            detail,
        );
        e.retry_after = Some(5);
        e
    }
}

impl From<photo_db::DbError> for ApiError {
    fn from(e: photo_db::DbError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database unavailable");
            Self::unavailable("the database is unavailable; retry shortly")
        } else {
            Self::internal("database error", &e)
        }
    }
}

impl From<photo_storage::StoreError> for ApiError {
    fn from(e: photo_storage::StoreError) -> Self {
        match &e {
            photo_storage::StoreError::NotFound => Self::not_found("object"),
            photo_storage::StoreError::Bucket { .. } => {
                tracing::warn!(error = %e, "object storage unavailable");
                Self::unavailable("the object storage is unavailable; retry shortly")
            }
            _ => Self::internal("storage error", &e),
        }
    }
}

/// The current request id, or `-` outside a request.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert(
            "type".into(),
            Value::String(format!(
                "https://photo-api.dev/problems/{}",
                self.code.as_str()
            )),
        );
        body.insert(
            "title".into(),
            Value::String(self.status.canonical_reason().unwrap_or("Error").to_owned()),
        );
        body.insert("status".into(), Value::from(self.status.as_u16()));
        body.insert("detail".into(), Value::String(self.detail));
        body.insert("code".into(), Value::String(self.code.as_str().to_owned()));
        body.insert("request_id".into(), Value::String(current_request_id()));
        for (k, v) in self.extra {
            body.entry(k).or_insert(v);
        }
        let mut res = (self.status, axum::Json(Value::Object(body))).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (k, v) in self.headers {
            res.headers_mut().insert(k, v);
        }
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}
