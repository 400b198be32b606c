//! Direct uploads: init (where and how to upload), the signed upload endpoint of the local
//! adapter, and completion (malware scan, size, sniffing, header limits).
//!
//! With a malware scanner configured, an upload's bytes land under the quarantine prefix of the
//! raw bucket (`quarantine/tenants/{t}/uploads/{id}`; the signed policy pins that key), which is
//! never served, signed for download or read by a job. `complete` copies the object to a private
//! key of its own attempt (so what is checked cannot change under it), streams that copy to
//! clamd and checks it, and only when it is clean and valid copies it to the upload's
//! `tenants/…` key, records the upload `ready` under that key and deletes the quarantined object.
//! Infected: rejected, deleted. Scanner down or failing: nothing is promoted, the quarantined
//! object stays (503), and a later `complete` retries.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use photo_core::{ContentType, ErrorCode, FileName, ObjectKey, UploadId};
use photo_db::{NewUpload, Upload, UploadOutcome, UploadStatus};
use photo_storage::local::upload_fields;
use photo_storage::{Bucket, StoreError, UploadPolicy};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

/// How much of an object is read to sniff it and parse its header.
const PROBE_BYTES: usize = 256 * 1024;

/// `POST /uploads/init` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InitRequest {
    /// The exact type that will be uploaded: image/jpeg, image/png, image/webp, image/gif,
    /// image/tiff, image/heic, image/heif or image/avif.
    #[schema(example = "image/jpeg")]
    pub content_type: String,
    /// Largest body the upload URL accepts (1..=MAX_UPLOAD_SIZE).
    #[schema(example = 5000000)]
    pub max_bytes: u64,
    /// The client's file name, kept for display: only its last path component, without control
    /// or invisible formatting characters, at most 255 bytes.
    #[serde(default)]
    pub filename: Option<String>,
    /// A preset (configured with `PHOTO_API_PRESETS`) whose jobs are queued when the upload
    /// completes ready; their ids come back from `POST /uploads/{upload_id}/complete`.
    #[serde(default)]
    #[schema(example = "web")]
    pub preset: Option<String>,
    /// Or the jobs themselves (0 to 8, each as for `POST /jobs`, the upload being the source):
    /// queued when the upload completes ready. `[]` queues none, even with a default preset.
    /// With neither `preset` nor `jobs`, the default preset (`PHOTO_API_DEFAULT_PRESET`), if
    /// any, applies.
    #[serde(default)]
    pub jobs: Option<Vec<crate::presets::EagerJob>>,
}

/// Where and how to upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InitResponse {
    /// The upload's id.
    pub upload_id: String,
    /// The object key the bytes are uploaded to: with malware scanning on, under `quarantine/`
    /// (the upload's `key` becomes its `tenants/…` key once it is scanned clean and ready).
    pub key: String,
    /// True when the upload lands in quarantine (malware scanning is on).
    pub quarantined: bool,
    /// `POST`: send a multipart form with every entry of `fields`, then the `file` part.
    pub method: String,
    /// Where to send it.
    pub url: String,
    /// Form fields to send before the file.
    pub fields: BTreeMap<String, String>,
    /// Headers to send.
    pub headers: BTreeMap<String, String>,
    /// When the URL stops working.
    pub expires_at: DateTime<Utc>,
    /// The signed size limit.
    pub max_bytes: u64,
    /// The signed content type.
    pub content_type: String,
}

/// Where a new upload's bytes go: under the quarantine prefix when a malware scanner is
/// configured (promoted by `complete` once clean), else straight to the tenant's raw key.
pub(crate) fn upload_key(st: &AppState, tenant: &photo_core::TenantId, id: UploadId) -> ObjectKey {
    if st.scanner.is_some() {
        ObjectKey::quarantined_upload(tenant, id)
    } else {
        ObjectKey::raw_upload(tenant, id)
    }
}

fn parse_upload_id(s: &str) -> ApiResult<UploadId> {
    s.parse().map_err(|_| ApiError::not_found("upload"))
}

/// The caller's upload with this id; 404 whether it is absent, malformed or another tenant's.
pub(crate) async fn tenant_upload(
    st: &AppState,
    caller: &Caller,
    upload_id: &str,
) -> ApiResult<Upload> {
    let id = parse_upload_id(upload_id)?;
    st.repo
        .get_upload(Some(&caller.tenant), id)
        .await?
        .ok_or_else(|| ApiError::not_found("upload"))
}

/// The client's file name as stored and echoed: sanitised and capped (see [`FileName`]); a name
/// with nothing usable left is refused.
fn validate_filename(f: Option<String>) -> ApiResult<Option<String>> {
    f.map(|f| {
        FileName::sanitize(&f)
            .map(|n| n.as_str().to_owned())
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorCode::InvalidRequest,
                    e.to_string(),
                )
            })
    })
    .transpose()
}

/// Starts an upload: returns a URL that accepts exactly this content type, up to `max_bytes`,
/// until `expires_at`. With an `Idempotency-Key` header, a repeat of the same body answers with
/// the first upload (header `Idempotent-Replayed: true`).
#[utoipa::path(post, path = "/uploads/init", tag = "uploads", request_body = InitRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1..=255 printable ASCII characters; the same key and body return the same upload")),
    responses(
        (status = 201, description = "Upload target", body = InitResponse),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 422, description = "Unsupported content type (`unsupported_content_type`), max_bytes out of range (`max_bytes_too_large`, `invalid_request`), `idempotency_key_reused`", body = Problem)))]
pub async fn init(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Response> {
    let req: InitRequest = crate::extract::from_json_value(body.clone())?;
    crate::idempotency::idempotent(
        &st,
        &caller,
        "POST /uploads/init",
        &headers,
        &body,
        init_upload(&st, &caller, req),
    )
    .await
}

async fn init_upload(
    st: &AppState,
    caller: &Caller,
    req: InitRequest,
) -> ApiResult<(StatusCode, HeaderMap, InitResponse)> {
    let declared = ContentType::parse(&req.content_type).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::UnsupportedContentType,
            e.to_string(),
        )
    })?;
    if req.max_bytes == 0 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidRequest,
            "max_bytes must be at least 1",
        ));
    }
    if req.max_bytes > st.cfg.max_upload_size {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::MaxBytesTooLarge,
            format!(
                "max_bytes {} is above the maximum upload size of {} bytes",
                req.max_bytes, st.cfg.max_upload_size
            ),
        )
        .with("max_upload_size", st.cfg.max_upload_size));
    }
    let filename = validate_filename(req.filename)?;
    let eager_jobs = eager_jobs(st, req.preset, req.jobs)?;
    let upload_id = UploadId::new();
    let key = upload_key(st, &caller.tenant, upload_id);
    let now = Utc::now();
    let url_expires_at =
        now + chrono::Duration::from_std(st.cfg.presign_expires).unwrap_or_default();
    let expires_at = now + chrono::Duration::from_std(st.cfg.raw_ttl).unwrap_or_default();
    // Signatures use whole seconds; truncate so the stored and signed expiry agree.
    let url_expires_at =
        DateTime::from_timestamp(url_expires_at.timestamp(), 0).unwrap_or(url_expires_at);
    st.repo
        .insert_upload(&NewUpload {
            upload_id,
            tenant: caller.tenant.clone(),
            key: key.clone(),
            declared,
            max_bytes: req.max_bytes,
            filename,
            created_at: now,
            url_expires_at,
            expires_at,
            file_path: None,
            file_overwrite: false,
            eager_jobs,
        })
        .await?;
    let id = upload_id.to_string();
    let target = st.store.presign_upload(&UploadPolicy {
        upload_id: &id,
        key: &key,
        content_type: declared.mime(),
        max_bytes: req.max_bytes,
        expires_at: url_expires_at,
    });
    tracing::info!(upload_id = %id, tenant = %caller.tenant, max_bytes = req.max_bytes, "upload initialised");
    Ok((
        StatusCode::CREATED,
        HeaderMap::new(),
        InitResponse {
            upload_id: id,
            quarantined: key.is_quarantined(),
            key: key.to_string(),
            method: target.method.to_owned(),
            url: target.url,
            fields: target.fields,
            headers: target.headers,
            expires_at: url_expires_at,
            max_bytes: req.max_bytes,
            content_type: declared.mime().to_owned(),
        },
    ))
}

/// The jobs an upload queues when it completes: its `jobs`, its `preset`'s, or the default
/// preset's.
fn eager_jobs(
    st: &AppState,
    preset: Option<String>,
    jobs: Option<Vec<crate::presets::EagerJob>>,
) -> ApiResult<Vec<photo_core::JobSpec>> {
    let invalid = |detail: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidParameters,
            detail,
        )
    };
    match (preset, jobs) {
        (Some(_), Some(_)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidRequest,
            "pass preset or jobs, not both",
        )),
        (Some(name), None) => st.cfg.presets.get(&name).map(<[_]>::to_vec).ok_or_else(|| {
            let known: Vec<&str> = st.cfg.presets.names().collect();
            invalid(format!(
                "unknown preset {:?}; configured: {}",
                name.chars().take(64).collect::<String>(),
                if known.is_empty() {
                    "none (PHOTO_API_PRESETS)".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        }),
        (None, Some(jobs)) => {
            crate::presets::parse_jobs(jobs, true).map_err(|e| invalid(e.to_string()))
        }
        (None, None) => Ok(st.cfg.presets.default_jobs().to_vec()),
    }
}

/// The rows of the jobs a ready upload queues (inserted with its completion).
fn eager_new_jobs(st: &AppState, up: &Upload, content_type: ContentType) -> Vec<photo_db::NewJob> {
    up.eager_jobs
        .iter()
        .map(|spec| {
            let job_id = photo_core::JobId::new();
            photo_db::NewJob {
                job_id,
                tenant: up.tenant.clone(),
                spec: spec.clone(),
                upload_id: Some(up.upload_id),
                s3_key: Some(up.key.clone()),
                source_url: None,
                filename: up.filename.clone(),
                content_type: Some(content_type),
                max_attempts: st.cfg.max_attempts,
                temporal: st.dispatcher.as_ref().map(|d| d.route(job_id)),
            }
        })
        .collect()
}

/// Signature of an upload URL.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SignedQuery {
    /// Expiry, Unix seconds.
    pub expires: String,
    /// Hex HMAC-SHA256.
    pub sig: String,
}

/// Result of a direct upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadedResponse {
    /// The upload's id.
    pub upload_id: String,
    /// Where it was stored.
    pub key: String,
    /// Bytes stored.
    pub size: u64,
}

fn policy_violation(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::PolicyViolation, detail)
}

/// Verifies an upload URL for `up`: signature first (so nothing about the upload leaks to a
/// forger), then expiry.
fn verify_upload_url(
    st: &AppState,
    up: &Upload,
    q: &SignedQuery,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let id = up.upload_id.to_string();
    let max = up.max_bytes.to_string();
    let fields = upload_fields(&id, up.key.as_str(), up.declared.mime(), &max, &q.expires);
    if !st.signer.verify(&fields, &q.sig) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::InvalidSignature,
            "the upload URL's signature does not match; request a new URL with POST /uploads/init",
        ));
    }
    let expires: i64 = q
        .expires
        .parse()
        .map_err(|_| ApiError::bad_request("bad expires"))?;
    if now.timestamp() > expires {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::UrlExpired,
            "the upload URL has expired; request a new one with POST /uploads/init",
        ));
    }
    Ok(())
}

/// The local adapter's upload endpoint: a signed URL, no API key. Streams the `file` part to
/// disk, enforcing the signed size limit and content type; a body over the limit is cut off and
/// nothing is stored.
#[utoipa::path(post, path = "/uploads/{upload_id}/object", tag = "uploads",
    params(("upload_id" = String, Path, description = "Upload id"), SignedQuery),
    request_body(content_type = "multipart/form-data", description = "The `fields` of the init response, then a `file` part"),
    responses(
        (status = 201, description = "Stored", body = UploadedResponse),
        (status = 400, description = "Malformed form, no file part, empty file (`empty_upload`)", body = Problem),
        (status = 403, description = "Bad signature (`invalid_signature`), expired (`url_expired`), or a field contradicting the signed policy (`policy_violation`)", body = Problem),
        (status = 404, description = "Unknown upload", body = Problem),
        (status = 409, description = "Upload already completed (`upload_state`)", body = Problem),
        (status = 413, description = "Body over max_bytes (`upload_too_large`)", body = Problem)))]
pub async fn put_object(
    State(st): State<AppState>,
    Path(upload_id): Path<String>,
    ApiQuery(q): ApiQuery<SignedQuery>,
    mut form: Multipart,
) -> ApiResult<(StatusCode, Json<UploadedResponse>)> {
    let id = parse_upload_id(&upload_id)?;
    let up = st
        .repo
        .get_upload(None, id)
        .await?
        .ok_or_else(|| ApiError::not_found("upload"))?;
    verify_upload_url(&st, &up, &q, Utc::now())?;
    crate::auth::ensure_tenant_active(&st, &up.tenant).await?;
    if !matches!(up.status, UploadStatus::Pending | UploadStatus::Uploaded) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::UploadState,
            format!(
                "the upload is {} and no longer accepts bytes",
                up.status.as_str()
            ),
        ));
    }
    let bad_form = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
    };
    while let Some(field) = form.next_field().await.map_err(bad_form)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" => {
                if let Some(ct) = field.content_type()
                    && ct != "application/octet-stream"
                    && ContentType::parse(ct).ok() != Some(up.declared)
                {
                    return Err(policy_violation(format!(
                        "the file part's type {ct:?} is not the signed content type {}",
                        up.declared
                    )));
                }
                let body = field.map_err(std::io::Error::other);
                let size = match st
                    .store
                    .put_stream(Bucket::Raw, &up.key, Box::pin(body), up.max_bytes)
                    .await
                {
                    Ok(n) => n,
                    Err(StoreError::TooLarge { limit }) => {
                        return Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            ErrorCode::UploadTooLarge,
                            format!(
                                "the file is larger than the signed limit of {limit} bytes; nothing was stored"
                            ),
                        ));
                    }
                    Err(StoreError::Body(e)) => {
                        return Err(ApiError::bad_request(format!(
                            "the upload body could not be read: {e}; nothing was stored"
                        )));
                    }
                    Err(e) => return Err(e.into()),
                };
                if size == 0 {
                    st.store.delete(Bucket::Raw, &up.key).await?;
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::EmptyUpload,
                        "the file is empty",
                    ));
                }
                if !st.repo.mark_uploaded(id, size, Utc::now()).await? {
                    // Completed concurrently: the completed object must not change under it.
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        ErrorCode::UploadState,
                        "the upload was completed while this body was being received",
                    ));
                }
                tracing::info!(upload_id = %id, size, "upload received");
                return Ok((
                    StatusCode::CREATED,
                    Json(UploadedResponse {
                        upload_id: id.to_string(),
                        key: up.key.to_string(),
                        size,
                    }),
                ));
            }
            "key" => {
                let v = field.text().await.map_err(bad_form)?;
                if v != up.key.as_str() {
                    return Err(policy_violation("the key field is not the signed key"));
                }
            }
            "Content-Type" | "content-type" => {
                let v = field.text().await.map_err(bad_form)?;
                if ContentType::parse(&v).ok() != Some(up.declared) {
                    return Err(policy_violation(format!(
                        "Content-Type {v:?} is not the signed content type {}",
                        up.declared
                    )));
                }
            }
            _ => {
                // Unknown small fields are ignored (S3 accepts extra fields too), but bounded.
                let mut n = 0usize;
                let mut f = field;
                while let Some(chunk) = f.chunk().await.map_err(bad_form)? {
                    n += chunk.len();
                    if n > 8 * 1024 {
                        return Err(ApiError::bad_request(format!(
                            "form field {name:?} is too large"
                        )));
                    }
                }
            }
        }
    }
    Err(ApiError::bad_request("the form has no 'file' part"))
}

/// An upload's state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadView {
    /// Id.
    pub upload_id: String,
    /// `pending`, `uploaded`, `ready`, `rejected` or `expired`.
    pub status: String,
    /// Sniffed content type (once checked), else the declared one.
    pub content_type: String,
    /// Stored size.
    pub size: Option<u64>,
    /// Width from the header.
    pub width: Option<u32>,
    /// Height from the header.
    pub height: Option<u32>,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Stable code of the rejection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_code: Option<String>,
    /// Raw object key.
    pub key: String,
    /// Client file name.
    pub filename: Option<String>,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// When the raw object is swept.
    pub expires_at: DateTime<Utc>,
    /// For an upload made through `POST /files/presigned-upload`: the file it became.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<crate::routes::files::FileView>,
    /// The jobs its completion queued (its preset or `jobs` at init), once ready; queued once,
    /// however often it is completed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<QueuedJob>,
}

/// A job queued by an upload's completion.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueuedJob {
    /// Its id (`GET /jobs/{job_id}`).
    pub job_id: String,
    /// Its type.
    pub job_type: photo_core::JobType,
}

impl From<&Upload> for UploadView {
    fn from(u: &Upload) -> Self {
        Self {
            upload_id: u.upload_id.to_string(),
            status: u.status.as_str().into(),
            content_type: u.content_type.unwrap_or(u.declared).mime().into(),
            size: u.size,
            width: u.width,
            height: u.height,
            reason: u.reason.clone(),
            reject_code: u.reject_code.clone(),
            key: u.key.to_string(),
            filename: u.filename.clone(),
            created_at: u.created_at,
            expires_at: u.expires_at,
            file: None,
            jobs: u
                .eager_job_ids
                .iter()
                .zip(&u.eager_jobs)
                .map(|(id, spec)| QueuedJob {
                    job_id: id.to_string(),
                    job_type: spec.job_type(),
                })
                .collect(),
        }
    }
}

fn rejected_error(u: &Upload) -> ApiError {
    let code = u
        .reject_code
        .as_deref()
        .and_then(ErrorCode::parse)
        .unwrap_or(ErrorCode::InvalidRequest);
    let reason = u.reason.clone().unwrap_or_default();
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        code,
        format!("upload rejected: {reason}"),
    )
    .with("upload_id", u.upload_id.to_string())
    .with("status", "rejected")
    .with("reason", reason)
}

/// Checks what was uploaded: a malware scan when a scanner is configured, then size, type by
/// magic bytes (never the declared type), and the image header within the pixel limits.
/// Ready → 200 (a quarantined upload is first moved to its `tenants/…` key); rejected → 422 with
/// `status: rejected` and the reason (the object is deleted). A ready upload queues its preset's
/// jobs (or the `jobs` given at init) and lists them in `jobs`. Repeating the call, concurrently
/// or not, returns the same outcome and the same jobs: they are queued once.
#[utoipa::path(post, path = "/uploads/{upload_id}/complete", tag = "uploads",
    security(("bearer" = [])),
    params(("upload_id" = String, Path, description = "Upload id")),
    responses(
        (status = 200, description = "The upload is ready", body = UploadView),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 404, description = "Unknown upload (or another tenant's)", body = Problem),
        (status = 409, description = "Nothing uploaded yet (`upload_missing`) or expired (`upload_state`)", body = Problem),
        (status = 422, description = "Rejected: `content_type_mismatch`, `unsupported_format`, `image_too_large`, `corrupt_image`, `upload_too_large`, `empty_upload`, `malware_detected`; the body carries `status: rejected` and `reason`", body = Problem),
        (status = 503, description = "The malware scanner (when configured) failed or is down: nothing promoted; retry (`service_unavailable`)", body = Problem)))]
pub async fn complete(
    State(st): State<AppState>,
    caller: Caller,
    Path(upload_id): Path<String>,
) -> ApiResult<Json<UploadView>> {
    let up = tenant_upload(&st, &caller, &upload_id).await?;
    let id = up.upload_id;
    match up.status {
        UploadStatus::Ready => return ready_view(&st, &up).await,
        UploadStatus::Rejected => return Err(rejected_error(&up)),
        UploadStatus::Pending => {
            // With S3 the client posts straight to the bucket, so the server only learns of the
            // object here. (With the local store our upload route already marked it.)
            let Some(meta) = st.store.head(Bucket::Raw, &up.key).await? else {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::UploadMissing,
                    "nothing has been uploaded yet; send the file to the upload URL first",
                ));
            };
            if !st.repo.mark_uploaded(id, meta.size, Utc::now()).await? {
                return settled(&st, &caller, &upload_id).await;
            }
        }
        UploadStatus::Expired => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::UploadState,
                "the upload has expired",
            ));
        }
        UploadStatus::Uploaded => {}
    }
    let Some(promoted) = up.key.promoted() else {
        return complete_in_place(&st, &caller, &upload_id, up).await;
    };
    if st.scanner.is_none() {
        // Uploaded while scanning was on: it leaves quarantine only through a clean scan.
        return Err(ApiError::unavailable(
            "the upload is in quarantine and no malware scanner is configured; it is promoted only after a clean scan",
        ));
    }
    // The signed policy lets the client replace the quarantined object until its URL expires,
    // so this attempt scans and checks a private copy (under quarantine/checks/, written only
    // here), and only that copy's bytes are promoted: what was scanned is what becomes ready.
    let attempt = {
        let mut b = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
        hex::encode(b)
    };
    let check = ObjectKey::quarantine_check(&up.tenant, id, &attempt)
        .map_err(|e| ApiError::internal("scan copy key", &e))?;
    let checked: ApiResult<UploadOutcome> = async {
        match st.store.copy(Bucket::Raw, &up.key, &check).await {
            // check_object reports the missing object.
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let mut outcome = match scan_object(&st, &up, &check).await? {
            Some(rejected) => rejected,
            None => check_object(&st, &up, &check).await?,
        };
        if let UploadOutcome::Ready { promoted_key, .. } = &mut outcome {
            // Clean and valid: the scanned bytes go to the promoted key before the row says
            // `ready` there, so a ready upload always has its object.
            st.store.copy(Bucket::Raw, &check, &promoted).await?;
            *promoted_key = Some(promoted.clone());
        }
        Ok(outcome)
    }
    .await;
    discard(&st, &check).await;
    // Scanner down or failing, storage error: not promoted; the quarantined object stays for
    // the next `complete`.
    let outcome = checked?;
    let jobs = match &outcome {
        UploadOutcome::Ready { content_type, .. } => eager_new_jobs(&st, &up, *content_type),
        UploadOutcome::Rejected { .. } => Vec::new(),
    };
    let Some(done) = st
        .repo
        .complete_upload_with_jobs(id, &outcome, &jobs, Utc::now())
        .await?
    else {
        // Another attempt finished first; the promoted key holds what *it* scanned clean, or
        // bytes another clean attempt copied: never unscanned ones.
        return settled(&st, &caller, &upload_id).await;
    };
    record_outcome(&done);
    match done.status {
        UploadStatus::Ready => {
            discard(&st, &up.key).await;
            tracing::info!(upload_id = %id, jobs = done.eager_job_ids.len(), "upload scanned clean, promoted out of quarantine, ready");
            start_eager_jobs(&st, &caller, &done).await;
            ready_view(&st, &done).await
        }
        _ => {
            // Never processed or served: gone from quarantine, and from the promoted key, where
            // a concurrent clean attempt that lost the race may have copied its bytes.
            st.store.delete(Bucket::Raw, &done.key).await?;
            st.store.delete(Bucket::Raw, &promoted).await?;
            tracing::info!(upload_id = %id, code = ?done.reject_code, "quarantined upload rejected");
            Err(rejected_error(&done))
        }
    }
}

/// `complete` for an upload outside quarantine (no malware scanner, or one configured after
/// the upload was initialised): scan when configured, check, record.
async fn complete_in_place(
    st: &AppState,
    caller: &Caller,
    upload_id: &str,
    up: Upload,
) -> ApiResult<Json<UploadView>> {
    let id = up.upload_id;
    let outcome = match scan_object(st, &up, &up.key).await? {
        Some(rejected) => rejected,
        None => check_object(st, &up, &up.key).await?,
    };
    let jobs = match &outcome {
        UploadOutcome::Ready { content_type, .. } => eager_new_jobs(st, &up, *content_type),
        UploadOutcome::Rejected { .. } => Vec::new(),
    };
    let Some(done) = st
        .repo
        .complete_upload_with_jobs(id, &outcome, &jobs, Utc::now())
        .await?
    else {
        return settled(st, caller, upload_id).await;
    };
    record_outcome(&done);
    match done.status {
        UploadStatus::Ready => {
            tracing::info!(upload_id = %id, jobs = done.eager_job_ids.len(), "upload ready");
            start_eager_jobs(st, caller, &done).await;
            ready_view(st, &done).await
        }
        _ => {
            // A rejected object is never processed or served: remove it now.
            st.store.delete(Bucket::Raw, &done.key).await?;
            tracing::info!(upload_id = %id, code = ?done.reject_code, "upload rejected");
            Err(rejected_error(&done))
        }
    }
}

/// Counts a checked upload in the metrics (once: only the call that completed it gets here).
fn record_outcome(up: &Upload) {
    let m = photo_core::metrics::metrics();
    if up.status == UploadStatus::Ready {
        m.uploads.inc(["presigned", "accepted"]);
        m.upload_bytes
            .add(["presigned"], up.size.unwrap_or(0) as f64);
    } else {
        m.uploads.inc(["presigned", "rejected"]);
        let reason = up
            .reject_code
            .as_deref()
            .and_then(ErrorCode::parse)
            .map_or("other", ErrorCode::as_str);
        m.upload_rejections.inc([reason]);
    }
}

/// Another request completed the upload meanwhile: answer with its outcome (and its jobs).
async fn settled(st: &AppState, caller: &Caller, upload_id: &str) -> ApiResult<Json<UploadView>> {
    let now = tenant_upload(st, caller, upload_id).await?;
    match now.status {
        UploadStatus::Ready => ready_view(st, &now).await,
        UploadStatus::Rejected => Err(rejected_error(&now)),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::UploadState,
            "the upload changed state concurrently; retry",
        )),
    }
}

/// Starts the jobs a ready upload queued (its preset's). The rows are committed with the
/// upload; a start that fails stays in the outbox.
async fn start_eager_jobs(st: &AppState, caller: &Caller, done: &Upload) {
    for job_id in &done.eager_job_ids {
        match st.repo.get_job(&caller.tenant, *job_id).await {
            Ok(Some(job)) => {
                crate::routes::jobs::dispatch_new(st, &job).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%job_id, error = %e, "reading a preset job to start it failed; the outbox will start it");
            }
        }
    }
}

/// The view of a ready upload; one made for a tenant file becomes that file first (again on a
/// repeated call, if an earlier one failed half-way).
async fn ready_view(st: &AppState, up: &Upload) -> ApiResult<Json<UploadView>> {
    let file = crate::routes::files::promote_upload(st, up).await?;
    let mut view = UploadView::from(up);
    view.file = file.as_ref().map(crate::routes::files::FileView::from);
    Ok(Json(view))
}

/// Deletes an object of the raw bucket; a failure is logged (the sweeper removes it with its
/// upload).
async fn discard(st: &AppState, key: &ObjectKey) {
    if let Err(e) = st.store.delete(Bucket::Raw, key).await {
        tracing::warn!(error = %e, "object left for the sweeper");
    }
}

/// With a scanner configured: streams the object `key` of `up` to clamd. `Some(rejection)` when it is
/// infected; an error (503, nothing promoted) when the scanner fails or cannot be reached.
async fn scan_object(
    st: &AppState,
    up: &Upload,
    key: &ObjectKey,
) -> ApiResult<Option<UploadOutcome>> {
    let Some(scanner) = &st.scanner else {
        return Ok(None);
    };
    let obj = match st.store.open(Bucket::Raw, key).await {
        Ok(o) => o,
        // check_object reports the missing object.
        Err(StoreError::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match scanner.scan(obj.body).await {
        Ok(crate::scan::Verdict::Clean) => Ok(None),
        Ok(crate::scan::Verdict::Infected(sig)) => {
            tracing::warn!(upload_id = %up.upload_id, signature = %sig, "malware found in an upload");
            Ok(Some(UploadOutcome::Rejected {
                code: ErrorCode::MalwareDetected.as_str().to_owned(),
                reason: format!("malware detected: {sig}"),
            }))
        }
        Err(e) => {
            tracing::warn!(upload_id = %up.upload_id, error = %e, "scan failed; the upload stays unpromoted");
            Err(ApiError::unavailable(
                "the malware scanner is unavailable; the upload was not promoted — call complete again shortly",
            ))
        }
    }
}

/// The checks of the object `key` of `up`: size, sniffed type, header within the limits.
async fn check_object(st: &AppState, up: &Upload, key: &ObjectKey) -> ApiResult<UploadOutcome> {
    let reject = |code: ErrorCode, reason: String| {
        Ok(UploadOutcome::Rejected {
            code: code.as_str().to_owned(),
            reason,
        })
    };
    let Some(meta) = st.store.head(Bucket::Raw, key).await? else {
        return reject(
            ErrorCode::UploadMissing,
            "the uploaded object is missing".into(),
        );
    };
    if meta.size == 0 {
        return reject(ErrorCode::EmptyUpload, "the file is empty".into());
    }
    if meta.size > up.max_bytes {
        return reject(
            ErrorCode::UploadTooLarge,
            format!(
                "{} bytes stored, above the signed limit of {}",
                meta.size, up.max_bytes
            ),
        );
    }
    let prefix = st.store.get_prefix(Bucket::Raw, key, PROBE_BYTES).await?;
    let limits = st.cfg.limits;
    // Header parsing only (no pixel decoding happens in the API process).
    let info = match photo_imaging::probe(&prefix, &limits) {
        Ok(info) => info,
        Err(e) => {
            let code = ErrorCode::parse(e.code()).unwrap_or(ErrorCode::CorruptImage);
            return reject(code, e.to_string());
        }
    };
    let sniffed = ContentType::parse(info.format.mime())
        .map_err(|e| ApiError::internal("sniffed type", &e))?;
    if !up.declared.accepts(sniffed) {
        return reject(
            ErrorCode::ContentTypeMismatch,
            format!("declared {} but the bytes are {}", up.declared, sniffed),
        );
    }
    Ok(UploadOutcome::Ready {
        content_type: sniffed,
        size: meta.size,
        width: info.width,
        height: info.height,
        promoted_key: None,
    })
}

/// An upload's current state.
#[utoipa::path(get, path = "/uploads/{upload_id}", tag = "uploads",
    security(("bearer" = [])),
    params(("upload_id" = String, Path, description = "Upload id")),
    responses(
        (status = 200, description = "The upload", body = UploadView),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 404, description = "Unknown upload (or another tenant's)", body = Problem)))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Path(upload_id): Path<String>,
) -> ApiResult<Json<UploadView>> {
    let up = tenant_upload(&st, &caller, &upload_id).await?;
    Ok(Json(UploadView::from(&up)))
}
