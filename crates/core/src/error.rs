//! Stable, machine-readable error codes shared by every layer. The strings are part of the API
//! contract: clients match on them, so they never change once released.

use serde::Serialize;

/// A stable snake_case error code carried in every problem+json response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No or malformed `Authorization` header.
    Unauthenticated,
    /// The credentials are not valid.
    InvalidCredentials,
    /// The credentials are valid but lack the scope this route needs.
    InsufficientScope,
    /// The credential's tenant is suspended (`/admin/tenants`); nothing is served to it.
    TenantSuspended,
    /// Too many requests for this key or client address; see `Retry-After`.
    RateLimited,
    /// The request URL is too long.
    UriTooLong,
    /// The request headers are too large.
    HeadersTooLarge,
    /// The resource does not exist (or belongs to another tenant).
    NotFound,
    /// The HTTP method is not allowed on this route.
    MethodNotAllowed,
    /// The request body or query is malformed.
    InvalidRequest,
    /// The declared content type is not one we accept.
    UnsupportedContentType,
    /// `max_bytes` is above the configured maximum upload size.
    MaxBytesTooLarge,
    /// The uploaded body is larger than the signed limit.
    UploadTooLarge,
    /// The uploaded body is empty.
    EmptyUpload,
    /// The signed URL has expired.
    UrlExpired,
    /// The signed URL's signature does not match.
    InvalidSignature,
    /// A form field contradicts the signed upload policy.
    PolicyViolation,
    /// The upload was already completed or is not in a state that allows this.
    UploadState,
    /// The upload has no object yet.
    UploadMissing,
    /// The bytes are not the declared content type.
    ContentTypeMismatch,
    /// The bytes are not an image format we support.
    UnsupportedFormat,
    /// The image is beyond the pixel/side limits.
    ImageTooLarge,
    /// The image is truncated or corrupt.
    CorruptImage,
    /// The malware scanner found a signature in the upload.
    MalwareDetected,
    /// The upload is not ready for processing.
    UploadNotReady,
    /// Job parameters are invalid.
    InvalidParameters,
    /// The request body is too large.
    PayloadTooLarge,
    /// A required dependency is unavailable.
    ServiceUnavailable,
    /// A file path is malformed (empty, `.`/`..`, control characters, too long).
    InvalidPath,
    /// Something already exists at the destination and `overwrite` is false.
    AlreadyExists,
    /// The path names a folder where a file is needed.
    IsAFolder,
    /// The path (or one of its parents) names a file where a folder is needed.
    NotAFolder,
    /// A request or folder operation exceeds the configured file count.
    TooManyFiles,
    /// The requested byte range lies outside the file.
    RangeNotSatisfiable,
    /// The job has finished (completed, failed, dead or cancelled) and cannot be cancelled.
    JobNotCancellable,
    /// Only failed or dead jobs can be retried.
    JobNotRetryable,
    /// The `Idempotency-Key` was already used with a different request body.
    IdempotencyKeyReused,
    /// A request with this `Idempotency-Key` is still running.
    IdempotencyKeyInProgress,
    /// A batch has more items than `PHOTO_API_MAX_BATCH_SIZE`.
    BatchTooLarge,
    /// Something failed on our side; details are in the server log.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InsufficientScope => "insufficient_scope",
            Self::TenantSuspended => "tenant_suspended",
            Self::RateLimited => "rate_limited",
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::InvalidRequest => "invalid_request",
            Self::UnsupportedContentType => "unsupported_content_type",
            Self::MaxBytesTooLarge => "max_bytes_too_large",
            Self::UploadTooLarge => "upload_too_large",
            Self::EmptyUpload => "empty_upload",
            Self::UrlExpired => "url_expired",
            Self::InvalidSignature => "invalid_signature",
            Self::PolicyViolation => "policy_violation",
            Self::UploadState => "upload_state",
            Self::UploadMissing => "upload_missing",
            Self::ContentTypeMismatch => "content_type_mismatch",
            Self::UnsupportedFormat => "unsupported_format",
            Self::ImageTooLarge => "image_too_large",
            Self::CorruptImage => "corrupt_image",
            Self::MalwareDetected => "malware_detected",
            Self::UploadNotReady => "upload_not_ready",
            Self::InvalidParameters => "invalid_parameters",
            Self::PayloadTooLarge => "payload_too_large",
            Self::ServiceUnavailable => "service_unavailable",
            Self::InvalidPath => "invalid_path",
            Self::AlreadyExists => "already_exists",
            Self::IsAFolder => "is_a_folder",
            Self::NotAFolder => "not_a_folder",
            Self::TooManyFiles => "too_many_files",
            Self::RangeNotSatisfiable => "range_not_satisfiable",
            Self::JobNotCancellable => "job_not_cancellable",
            Self::JobNotRetryable => "job_not_retryable",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::IdempotencyKeyInProgress => "idempotency_key_in_progress",
            Self::BatchTooLarge => "batch_too_large",
            Self::Internal => "internal",
        }
    }

    /// Parses a code previously produced by [`ErrorCode::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

const ALL: [ErrorCode; 40] = [
    ErrorCode::TenantSuspended,
    ErrorCode::MalwareDetected,
    ErrorCode::InsufficientScope,
    ErrorCode::RateLimited,
    ErrorCode::UriTooLong,
    ErrorCode::HeadersTooLarge,
    ErrorCode::PolicyViolation,
    ErrorCode::Unauthenticated,
    ErrorCode::InvalidCredentials,
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::InvalidRequest,
    ErrorCode::UnsupportedContentType,
    ErrorCode::MaxBytesTooLarge,
    ErrorCode::UploadTooLarge,
    ErrorCode::EmptyUpload,
    ErrorCode::UrlExpired,
    ErrorCode::InvalidSignature,
    ErrorCode::UploadState,
    ErrorCode::UploadMissing,
    ErrorCode::ContentTypeMismatch,
    ErrorCode::UnsupportedFormat,
    ErrorCode::ImageTooLarge,
    ErrorCode::CorruptImage,
    ErrorCode::UploadNotReady,
    ErrorCode::InvalidParameters,
    ErrorCode::PayloadTooLarge,
    ErrorCode::ServiceUnavailable,
    ErrorCode::InvalidPath,
    ErrorCode::AlreadyExists,
    ErrorCode::IsAFolder,
    ErrorCode::NotAFolder,
    ErrorCode::TooManyFiles,
    ErrorCode::RangeNotSatisfiable,
    ErrorCode::JobNotCancellable,
    ErrorCode::JobNotRetryable,
    ErrorCode::IdempotencyKeyReused,
    ErrorCode::IdempotencyKeyInProgress,
    ErrorCode::BatchTooLarge,
    ErrorCode::Internal,
];

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_serde() {
        for code in ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_value(code).unwrap_or_default();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }

    /// The README's error-code table is the clients' reference: every code has a row.
    #[test]
    fn the_readme_documents_every_code() {
        let readme = include_str!("../../../README.md");
        for code in ALL {
            assert!(
                readme.contains(&format!("\n| `{}` | ", code.as_str())),
                "README.md's error table has no row for `{code}`"
            );
        }
    }
}
