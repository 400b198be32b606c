//! The tenant file API (`/files/...`): a folder tree of validated images per tenant.
//!
//! Paths come from the caller (URL path, query or JSON), decoded exactly once by the HTTP layer
//! and parsed into [`FilePath`]; the tenant always comes from the credentials. File bytes are
//! stored under id-based keys (`tenants/{tenant}/files/{id}.{ext}`) and the tree lives in the
//! database, so a move is one transaction and a path can never name another tenant's object.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::BytesMut;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use photo_core::file_path::InvalidPath;
use photo_core::{ContentType, ErrorCode, FilePath, ObjectKey};
use photo_db::{FileConflict, FileError, FileRecord, NewFile, NewUpload};
use photo_storage::{Bucket, StoreError, UploadPolicy};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::uploads::InitResponse;
use crate::state::AppState;

/// How many leading bytes decide the type (a HEIF `ftyp` box with many brands included).
const SNIFF_BYTES: usize = 4096;
/// How much of a stored file is read to parse its image header.
const PROBE_BYTES: usize = 256 * 1024;
/// Most paths in one `delete-multiple`.
pub const MAX_DELETE_PATHS: usize = 1000;
/// Entries deleted per transaction by a folder deletion.
const DELETE_BATCH: u32 = 500;
/// Largest page of a listing.
const MAX_LIST_LIMIT: u32 = 1000;
/// User metadata limits: entries, key length, value length, total bytes.
const MAX_META_ENTRIES: usize = 32;
const MAX_META_KEY: usize = 64;
const MAX_META_VALUE: usize = 1024;
const MAX_META_TOTAL: usize = 8 * 1024;

/// A file or folder.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FileView {
    /// Full path inside the tenant's tree.
    pub path: String,
    /// Last segment.
    pub name: String,
    /// `file` or `folder`.
    pub kind: &'static str,
    /// Bytes (0 for folders).
    pub size: u64,
    /// Type of the bytes, sniffed and validated at upload (what downloads are served as).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Strong validator (quoted hex SHA-256 of the bytes), as in the `ETag` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// SHA-256 of the bytes, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Image width.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Image height.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// User metadata given at upload.
    pub metadata: BTreeMap<String, String>,
    /// First written.
    pub created_at: DateTime<Utc>,
    /// Last written.
    pub updated_at: DateTime<Utc>,
}

impl From<&FileRecord> for FileView {
    fn from(f: &FileRecord) -> Self {
        Self {
            path: f.path.to_string(),
            name: f.path.name().to_owned(),
            kind: if f.is_folder { "folder" } else { "file" },
            size: f.size,
            content_type: f.content_type.map(|c| c.mime().to_owned()),
            etag: f.etag.as_deref().map(quoted),
            sha256: f.etag.clone(),
            width: f.width,
            height: f.height,
            metadata: f.metadata.clone(),
            created_at: f.created_at,
            updated_at: f.updated_at,
        }
    }
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

fn invalid_path(what: &str, e: &InvalidPath) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidPath,
        format!("{what}: {e}"),
    )
}

fn parse_path(what: &str, s: &str) -> ApiResult<FilePath> {
    FilePath::parse(s).map_err(|e| invalid_path(what, &e))
}

fn parse_folder(s: Option<&str>) -> ApiResult<Option<FilePath>> {
    FilePath::parse_folder(s.unwrap_or("")).map_err(|e| invalid_path("folder", &e))
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such file or folder",
    )
}

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::Db(e) => e.into(),
            FileError::Conflict(c) => conflict(&c),
        }
    }
}

fn conflict(c: &FileConflict) -> ApiError {
    let (status, code) = match c {
        FileConflict::NotFound => return not_found(),
        FileConflict::Exists(_) => (StatusCode::CONFLICT, ErrorCode::AlreadyExists),
        FileConflict::IsFolder(_) => (StatusCode::CONFLICT, ErrorCode::IsAFolder),
        FileConflict::NotFolder(_) => (StatusCode::CONFLICT, ErrorCode::NotAFolder),
        FileConflict::IntoItself => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidPath),
        FileConflict::TooMany { .. } => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::TooManyFiles),
    };
    let mut e = ApiError::new(status, code, c.to_string());
    if matches!(c, FileConflict::Exists(_)) {
        e = e.with("hint", "pass overwrite=true to replace a file");
    }
    e
}

fn gc_at(st: &AppState, now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(st.cfg.files.gc_delay).unwrap_or_default()
}

/// The caller's entry at `path`, or 404.
async fn entry(st: &AppState, caller: &Caller, path: &FilePath) -> ApiResult<FileRecord> {
    st.repo
        .file_get(&caller.tenant, path)
        .await?
        .ok_or_else(not_found)
}

/// User metadata from a form field: a JSON object of short strings.
fn parse_metadata(raw: &str) -> ApiResult<BTreeMap<String, String>> {
    let bad = |d: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidRequest,
            d,
        )
    };
    if raw.len() > MAX_META_TOTAL {
        return Err(bad(format!(
            "metadata is larger than {MAX_META_TOTAL} bytes"
        )));
    }
    let map: BTreeMap<String, String> = serde_json::from_str(raw)
        .map_err(|e| bad(format!("metadata must be a JSON object of strings: {e}")))?;
    if map.len() > MAX_META_ENTRIES {
        return Err(bad(format!(
            "metadata has more than {MAX_META_ENTRIES} entries"
        )));
    }
    for (k, v) in &map {
        if k.is_empty()
            || k.len() > MAX_META_KEY
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(bad(format!(
                "metadata key {:?} must be 1..={MAX_META_KEY} of A-Z a-z 0-9 - _ .",
                k.chars().take(80).collect::<String>()
            )));
        }
        if v.len() > MAX_META_VALUE || v.chars().any(char::is_control) {
            return Err(bad(format!(
                "metadata value of {k:?} must be at most {MAX_META_VALUE} bytes without control characters"
            )));
        }
    }
    Ok(map)
}

/// `body`, hashing every chunk that passes; read the digest with [`finish`] once it is consumed.
fn hashed<S>(
    body: S,
) -> (
    impl futures_util::Stream<Item = S::Item>,
    Arc<Mutex<Sha256>>,
)
where
    S: futures_util::TryStream<Ok = bytes::Bytes>
        + futures_util::Stream<Item = Result<bytes::Bytes, S::Error>>,
{
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let h = Arc::clone(&hasher);
    let body = body.inspect_ok(move |b| {
        if let Ok(mut h) = h.lock() {
            h.update(b);
        }
    });
    (body, hasher)
}

/// The hex SHA-256 of what passed through [`hashed`].
fn finish(hasher: &Mutex<Sha256>) -> String {
    hasher
        .lock()
        .map(|mut h| hex::encode(h.finalize_reset()))
        .unwrap_or_default()
}

/// What to do with the object of a write that did not become a file.
async fn abandon(st: &AppState, key: &ObjectKey) {
    if st.store.delete(Bucket::Processed, key).await.is_ok()
        && let Err(e) = st.repo.file_gc_forget(key).await
    {
        tracing::debug!(error = %e, "abandoned write stays queued for the sweeper");
    }
}

/// Streams one multipart file part into a new file at `path`, counting it in the upload
/// metrics.
async fn store_part(
    st: &AppState,
    caller: &Caller,
    path: &FilePath,
    overwrite: bool,
    metadata: BTreeMap<String, String>,
    field: axum::extract::multipart::Field<'_>,
) -> ApiResult<FileRecord> {
    let r = store_part_inner(st, caller, path, overwrite, metadata, field).await;
    let m = photo_core::metrics::metrics();
    match &r {
        Ok(rec) => {
            m.uploads.inc(["file", "accepted"]);
            m.upload_bytes.add(["file"], rec.size as f64);
        }
        Err(e) if e.status.is_client_error() => {
            m.uploads.inc(["file", "rejected"]);
            m.upload_rejections.inc([e.code.as_str()]);
        }
        Err(_) => {}
    }
    r
}

async fn store_part_inner(
    st: &AppState,
    caller: &Caller,
    path: &FilePath,
    overwrite: bool,
    metadata: BTreeMap<String, String>,
    mut field: axum::extract::multipart::Field<'_>,
) -> ApiResult<FileRecord> {
    // Refuse early what would be refused at the end, before reading the body.
    match st.repo.file_get(&caller.tenant, path).await? {
        Some(e) if e.is_folder => return Err(conflict(&FileConflict::IsFolder(path.to_string()))),
        Some(_) if !overwrite => return Err(conflict(&FileConflict::Exists(path.to_string()))),
        _ => {}
    }
    let bad_body = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(format!(
            "the upload body could not be read: {}",
            e.body_text()
        ))
    };
    let mut head = BytesMut::new();
    while head.len() < SNIFF_BYTES {
        match field.chunk().await.map_err(bad_body)? {
            Some(c) => head.extend_from_slice(&c),
            None => break,
        }
    }
    if head.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::EmptyUpload,
            "the file is empty",
        ));
    }
    let limit = st.cfg.files.max_file_size;
    if head.len() as u64 > limit {
        return Err(too_large(limit));
    }
    let sniffed = photo_imaging::sniff(&head)
        .and_then(|f| ContentType::parse(f.mime()).ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedFormat,
                "the bytes are not an image type this service stores (JPEG, PNG, WebP, GIF, TIFF, HEIC/HEIF, AVIF)",
            )
        })?;
    let id = uuid::Uuid::now_v7().simple().to_string();
    let key = ObjectKey::tenant_file(&caller.tenant, &id, sniffed.extension())
        .map_err(|e| ApiError::internal("file key", &e))?;
    let now = Utc::now();
    // If this process dies before the row lands, the sweeper deletes the object later.
    let intent = now
        + chrono::Duration::hours(24)
            .max(chrono::Duration::from_std(st.cfg.files.gc_delay).unwrap_or_default());
    st.repo.file_object_intent(&key, intent).await?;
    let (body, hasher) = hashed(
        futures_util::stream::once(async move { Ok(head.freeze()) })
            .chain(field.map_err(std::io::Error::other)),
    );
    let size = match st
        .store
        .put_stream(Bucket::Processed, &key, Box::pin(body), limit)
        .await
    {
        Ok(n) => n,
        Err(e) => {
            abandon(st, &key).await;
            return Err(match e {
                StoreError::TooLarge { limit } => too_large(limit),
                StoreError::Body(e) => ApiError::bad_request(format!(
                    "the upload body could not be read: {e}; nothing was stored"
                )),
                e => e.into(),
            });
        }
    };
    let etag = finish(&hasher);
    // The header within the pixel limits (no pixel decoding in the API process).
    let prefix = match st
        .store
        .get_prefix(Bucket::Processed, &key, PROBE_BYTES)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            abandon(st, &key).await;
            return Err(e.into());
        }
    };
    let info = match photo_imaging::probe(&prefix, &st.cfg.limits) {
        Ok(i) => i,
        Err(e) => {
            abandon(st, &key).await;
            let code = ErrorCode::parse(e.code()).unwrap_or(ErrorCode::CorruptImage);
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                format!("the image was refused: {e}; nothing was stored"),
            ));
        }
    };
    // With a malware scanner: the object has no row yet, so it is never served; it becomes a
    // file only when clean.
    if let Some(scanner) = &st.scanner {
        let verdict = match st.store.open(Bucket::Processed, &key).await {
            Ok(obj) => scanner.scan(obj.body).await,
            Err(e) => {
                abandon(st, &key).await;
                return Err(e.into());
            }
        };
        match verdict {
            Ok(crate::scan::Verdict::Clean) => {}
            Ok(crate::scan::Verdict::Infected(sig)) => {
                abandon(st, &key).await;
                tracing::warn!(tenant = %caller.tenant, signature = %sig, "malware found in a file upload");
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorCode::MalwareDetected,
                    format!("malware detected: {sig}; nothing was stored"),
                ));
            }
            Err(e) => {
                abandon(st, &key).await;
                tracing::warn!(error = %e, "scan failed; the file was not stored");
                return Err(ApiError::unavailable(
                    "the malware scanner is unavailable; nothing was stored — retry shortly",
                ));
            }
        }
    }
    let new = NewFile {
        tenant: caller.tenant.clone(),
        path: path.clone(),
        object_key: key.clone(),
        size,
        content_type: sniffed,
        etag,
        width: Some(info.width),
        height: Some(info.height),
        metadata,
    };
    let now = Utc::now();
    match st.repo.file_put(&new, overwrite, now, gc_at(st, now)).await {
        Ok(rec) => {
            tracing::info!(tenant = %caller.tenant, size, "file stored");
            Ok(rec)
        }
        Err(e) => {
            abandon(st, &key).await;
            Err(e.into())
        }
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UploadTooLarge,
        format!("the file is larger than the limit of {limit} bytes; nothing was stored"),
    )
    .with("max_file_size", limit)
}

/// Query of the upload routes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// Destination folder (the root when absent).
    pub folder: Option<String>,
    /// Replace an existing file at the same path (default false: 409 `already_exists`).
    #[serde(default)]
    pub overwrite: bool,
}

/// The destination of a file part: its file name inside the folder.
fn part_path(
    folder: Option<&FilePath>,
    field: &axum::extract::multipart::Field<'_>,
) -> ApiResult<FilePath> {
    let name = field.file_name().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidPath,
            "the file part has no file name (Content-Disposition filename)",
        )
    })?;
    FilePath::join(folder, name).map_err(|e| invalid_path("file name", &e))
}

fn bad_form(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
}

/// Reads a small text field, bounded.
async fn small_field(field: axum::extract::multipart::Field<'_>, name: &str) -> ApiResult<String> {
    let mut out = Vec::new();
    let mut f = field;
    while let Some(c) = f.chunk().await.map_err(bad_form)? {
        out.extend_from_slice(&c);
        if out.len() > MAX_META_TOTAL {
            return Err(ApiError::bad_request(format!(
                "form field {name:?} is too large"
            )));
        }
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::bad_request(format!("form field {name:?} is not UTF-8")))
}

/// Uploads one file into `folder`, streamed: a multipart form with an optional `metadata`
/// field (a JSON object of strings) and then one `file` part whose file name becomes the
/// file's name. The type is sniffed from the bytes (images only) and the header is checked
/// within the pixel limits.
#[utoipa::path(post, path = "/files/upload", tag = "files",
    security(("bearer" = [])),
    params(UploadQuery),
    request_body(content_type = "multipart/form-data", description = "Optional `metadata` field (JSON object of strings), then the `file` part with a file name"),
    responses(
        (status = 201, description = "Stored", body = FileView),
        (status = 400, description = "Malformed form, no file part, empty file (`empty_upload`), bad path or file name (`invalid_path`)", body = Problem),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 409, description = "A file exists there and overwrite is false (`already_exists`), or a folder is in the way (`is_a_folder`, `not_a_folder`)", body = Problem),
        (status = 413, description = "File over the size limit (`upload_too_large`)", body = Problem),
        (status = 415, description = "Not an image type we store (`unsupported_format`)", body = Problem),
        (status = 422, description = "Image refused: `image_too_large`, `corrupt_image`, `malware_detected`; bad metadata (`invalid_request`)", body = Problem),
        (status = 503, description = "The malware scanner is configured but unavailable; nothing stored", body = Problem)))]
pub async fn upload(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<UploadQuery>,
    mut form: Multipart,
) -> ApiResult<(StatusCode, Json<FileView>)> {
    let folder = parse_folder(q.folder.as_deref())?;
    let mut metadata = BTreeMap::new();
    while let Some(field) = form.next_field().await.map_err(bad_form)? {
        match field.name().unwrap_or_default() {
            "file" => {
                let path = part_path(folder.as_ref(), &field)?;
                let rec = store_part(&st, &caller, &path, q.overwrite, metadata, field).await?;
                return Ok((StatusCode::CREATED, Json(FileView::from(&rec))));
            }
            "metadata" => metadata = parse_metadata(&small_field(field, "metadata").await?)?,
            other => {
                let other = other.to_owned();
                small_field(field, &other).await?;
            }
        }
    }
    Err(ApiError::bad_request("the form has no 'file' part"))
}

/// The outcome for one file of a multi-file request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemResult {
    /// The file name sent, or the path asked for.
    pub name: String,
    /// HTTP status this item would have had alone (201 stored, 200 deleted, 4xx refused).
    pub status: u16,
    /// The stored file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileView>,
    /// Stable error code when refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ItemResult {
    fn failed(name: String, e: &ApiError) -> Self {
        Self {
            name,
            status: e.status.as_u16(),
            file: None,
            code: Some(e.code.as_str().to_owned()),
            detail: Some(e.detail.clone()),
        }
    }
}

/// Per-item results of a multi-file request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MultiResult {
    /// Items that succeeded.
    pub succeeded: usize,
    /// Items that were refused.
    pub failed: usize,
    /// One result per item, in request order.
    pub results: Vec<ItemResult>,
}

/// Uploads many files in one streamed multipart request: every `file` part (each with a file
/// name) is stored on its own, so one bad file does not sink the others. A `metadata` field
/// applies to the file parts after it.
#[utoipa::path(post, path = "/files/upload-multiple", tag = "files",
    security(("bearer" = [])),
    params(UploadQuery),
    request_body(content_type = "multipart/form-data", description = "`file` parts (and optional `metadata` fields before them)"),
    responses(
        (status = 200, description = "Per-file results", body = MultiResult),
        (status = 400, description = "Malformed form or no file part", body = Problem),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 422, description = "More files than allowed (`too_many_files`)", body = Problem)))]
pub async fn upload_multiple(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<UploadQuery>,
    mut form: Multipart,
) -> ApiResult<Json<MultiResult>> {
    let folder = parse_folder(q.folder.as_deref())?;
    let max = st.cfg.files.max_files_per_request;
    let mut metadata = BTreeMap::new();
    let mut results = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            // A broken body ends the request; what was stored so far is reported.
            Err(e) if !results.is_empty() => {
                results.push(ItemResult::failed(String::new(), &bad_form(e)));
                break;
            }
            Err(e) => return Err(bad_form(e)),
        };
        match field.name().unwrap_or_default() {
            "file" => {
                if results.len() >= max {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        ErrorCode::TooManyFiles,
                        format!("at most {max} files per request; the first {max} were processed"),
                    )
                    .with(
                        "results",
                        serde_json::to_value(&results).unwrap_or_default(),
                    ));
                }
                let name = field.file_name().unwrap_or_default().to_owned();
                let res = match part_path(folder.as_ref(), &field) {
                    Ok(path) => {
                        store_part(&st, &caller, &path, q.overwrite, metadata.clone(), field).await
                    }
                    Err(e) => Err(e),
                };
                results.push(match res {
                    Ok(rec) => ItemResult {
                        name,
                        status: 201,
                        file: Some(FileView::from(&rec)),
                        code: None,
                        detail: None,
                    },
                    Err(e) if e.status.is_server_error() => return Err(e),
                    Err(e) => ItemResult::failed(name, &e),
                });
            }
            "metadata" => metadata = parse_metadata(&small_field(field, "metadata").await?)?,
            other => {
                let other = other.to_owned();
                small_field(field, &other).await?;
            }
        }
    }
    if results.is_empty() {
        return Err(ApiError::bad_request("the form has no 'file' part"));
    }
    let succeeded = results.iter().filter(|r| r.status < 300).count();
    Ok(Json(MultiResult {
        succeeded,
        failed: results.len() - succeeded,
        results,
    }))
}

fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// `attachment; filename="…"; filename*=UTF-8''…` for a file name.
fn attachment(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = photo_storage::s3::sigv4::uri_encode(name, false);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Whether an `If-None-Match` header matches `etag` (weak comparison, as RFC 9110 asks).
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// A single `bytes=` range resolved against `size`: `Ok(None)` when absent or not applicable
/// (several ranges, another unit, bad syntax: the whole file is served), `Err` when
/// unsatisfiable.
fn byte_range(
    headers: &HeaderMap,
    size: u64,
    etag: &str,
) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    if let Some(ir) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        && ir.trim() != etag
    {
        return Ok(None);
    }
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 {
            return Err(());
        }
        size.saturating_sub(n)..size
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return Ok(None);
        };
        let end = if b.is_empty() {
            size
        } else {
            let Ok(last) = b.parse::<u64>() else {
                return Ok(None);
            };
            if last < start {
                return Ok(None);
            }
            last.saturating_add(1).min(size)
        };
        if start >= size {
            return Err(());
        }
        start..end
    };
    Ok(Some(range))
}

/// Path parameter of the routes addressing one entry.
#[derive(Debug, Deserialize)]
pub struct PathParam {
    path: String,
}

/// Downloads a file, streamed, with its validated content type, `ETag`, `Last-Modified` and
/// `Content-Disposition: attachment`. Honours `If-None-Match` (304) and a single `Range`
/// (206; 416 when outside the file).
#[utoipa::path(get, path = "/files/download/{path}", tag = "files",
    security(("bearer" = [])),
    params(("path" = String, Path, description = "File path (may contain `/`)")),
    responses(
        (status = 200, description = "The bytes", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range"),
        (status = 304, description = "Not modified (If-None-Match matched)"),
        (status = 400, description = "Bad path (`invalid_path`)", body = Problem),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 404, description = "No such file", body = Problem),
        (status = 409, description = "The path is a folder (`is_a_folder`)", body = Problem),
        (status = 416, description = "Range outside the file (`range_not_satisfiable`)", body = Problem)))]
pub async fn download(
    State(st): State<AppState>,
    caller: Caller,
    Path(p): Path<PathParam>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let path = parse_path("path", &p.path)?;
    let f = entry(&st, &caller, &path).await?;
    let (Some(key), false) = (f.object_key.as_ref(), f.is_folder) else {
        return Err(conflict(&FileConflict::IsFolder(path.to_string())));
    };
    let etag = quoted(f.etag.as_deref().unwrap_or_default());
    let mut res = if none_match(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match byte_range(&headers, f.size, &etag) {
            Err(()) => {
                return Err(ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    ErrorCode::RangeNotSatisfiable,
                    format!("the file has {} bytes", f.size),
                )
                .with("size", f.size)
                .with_header(header::CONTENT_RANGE, format!("bytes */{}", f.size)));
            }
            Ok(Some(r)) => {
                let obj = st
                    .store
                    .open_range(Bucket::Processed, key, r.clone())
                    .await?;
                let mut res = Response::new(Body::from_stream(obj.body));
                *res.status_mut() = StatusCode::PARTIAL_CONTENT;
                let h = res.headers_mut();
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(r.end - r.start));
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "bytes {}-{}/{}",
                    r.start,
                    r.end.saturating_sub(1),
                    f.size
                )) {
                    h.insert(header::CONTENT_RANGE, v);
                }
                res
            }
            Ok(None) => {
                let obj = st.store.open(Bucket::Processed, key).await?;
                let mut res = Response::new(Body::from_stream(obj.body));
                res.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(obj.meta.size));
                res
            }
        }
    };
    let h = res.headers_mut();
    let ct = f
        .content_type
        .map_or("application/octet-stream", |c| c.mime());
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    for (name, value) in [
        (header::ETAG, etag),
        (header::LAST_MODIFIED, http_date(f.updated_at)),
        (header::CONTENT_DISPOSITION, attachment(path.name())),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(res)
}

/// An entry's metadata: size, sniffed content type, ETag, times, user metadata and image
/// dimensions (files), or just the folder's times.
#[utoipa::path(get, path = "/files/metadata/{path}", tag = "files",
    security(("bearer" = [])),
    params(("path" = String, Path, description = "File or folder path")),
    responses(
        (status = 200, description = "The entry", body = FileView),
        (status = 400, description = "Bad path (`invalid_path`)", body = Problem),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 404, description = "No such file or folder", body = Problem)))]
pub async fn metadata(
    State(st): State<AppState>,
    caller: Caller,
    Path(p): Path<PathParam>,
) -> ApiResult<Json<FileView>> {
    let path = parse_path("path", &p.path)?;
    Ok(Json(FileView::from(&entry(&st, &caller, &path).await?)))
}

/// What a deletion removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// The path.
    pub path: String,
    /// Files removed.
    pub deleted_files: u64,
    /// Folders removed.
    pub deleted_folders: u64,
}

/// Deletes one file (its bytes are removed by the sweeper after a grace period, so downloads
/// in flight finish).
#[utoipa::path(delete, path = "/files/delete/{path}", tag = "files",
    security(("bearer" = [])),
    params(("path" = String, Path, description = "File path")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 400, description = "Bad path (`invalid_path`)", body = Problem),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 404, description = "No such file", body = Problem),
        (status = 409, description = "A folder (`is_a_folder`; use DELETE /files/folder/delete)", body = Problem)))]
pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Path(p): Path<PathParam>,
) -> ApiResult<Json<Deleted>> {
    let path = parse_path("path", &p.path)?;
    st.repo
        .file_delete(&caller.tenant, &path, gc_at(&st, Utc::now()))
        .await?;
    Ok(Json(Deleted {
        path: path.to_string(),
        deleted_files: 1,
        deleted_folders: 0,
    }))
}

/// `POST /files/delete-multiple` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteMany {
    /// Up to 1000 file paths.
    pub paths: Vec<String>,
}

/// Deletes up to 1000 files; a result per path (`200` deleted, `404`, `400` bad path, `409`
/// a folder).
#[utoipa::path(post, path = "/files/delete-multiple", tag = "files",
    security(("bearer" = [])),
    request_body = DeleteMany,
    responses(
        (status = 200, description = "Per-path results", body = MultiResult),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 422, description = "No paths, or more than 1000 (`too_many_files`)", body = Problem)))]
pub async fn delete_multiple(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<DeleteMany>,
) -> ApiResult<Json<MultiResult>> {
    if req.paths.is_empty() || req.paths.len() > MAX_DELETE_PATHS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TooManyFiles,
            format!("send 1..={MAX_DELETE_PATHS} paths"),
        ));
    }
    let gc = gc_at(&st, Utc::now());
    let mut results = Vec::with_capacity(req.paths.len());
    for raw in req.paths {
        let res = match parse_path("path", &raw) {
            Ok(p) => st
                .repo
                .file_delete(&caller.tenant, &p, gc)
                .await
                .map_err(ApiError::from),
            Err(e) => Err(e),
        };
        results.push(match res {
            Ok(_) => ItemResult {
                name: raw,
                status: 200,
                file: None,
                code: None,
                detail: None,
            },
            Err(e) if e.status.is_server_error() => return Err(e),
            Err(e) => ItemResult::failed(raw, &e),
        });
    }
    let succeeded = results.iter().filter(|r| r.status < 300).count();
    Ok(Json(MultiResult {
        succeeded,
        failed: results.len() - succeeded,
        results,
    }))
}

/// Query of `GET /files/list`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The folder (the root when absent).
    pub folder: Option<String>,
    /// Everything below the folder, in path order, instead of its direct entries.
    #[serde(default)]
    pub recursive: bool,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1..=1000 (default 100).
    pub limit: Option<u32>,
}

/// A page of a listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListPage {
    /// The folder listed (`""` for the root).
    pub folder: String,
    /// Entries: folders and files in byte order of their names (or paths when recursive).
    pub entries: Vec<FileView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Lists a folder's files and sub-folders (or, with `recursive`, everything below it),
/// paginated in a stable order.
#[utoipa::path(get, path = "/files/list", tag = "files",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page", body = ListPage),
        (status = 400, description = "Bad folder (`invalid_path`) or cursor", body = Problem),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 404, description = "No such folder", body = Problem),
        (status = 409, description = "The folder is a file (`not_a_folder`)", body = Problem),
        (status = 422, description = "Bad limit", body = Problem)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ListPage>> {
    let folder = parse_folder(q.folder.as_deref())?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidRequest,
            format!("limit must be 1..={MAX_LIST_LIMIT}"),
        ));
    }
    if let Some(f) = &folder {
        let e = entry(&st, &caller, f).await?;
        if !e.is_folder {
            return Err(conflict(&FileConflict::NotFolder(f.to_string())));
        }
    }
    let after = match &q.cursor {
        None => None,
        Some(c) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::bad_request("bad cursor"))?,
        ),
    };
    let mut rows = st
        .repo
        .file_list(
            &caller.tenant,
            folder.as_ref(),
            q.recursive,
            after.as_deref(),
            limit + 1,
        )
        .await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| {
            let k = if q.recursive {
                r.path.as_str()
            } else {
                r.path.name()
            };
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k)
        })
    } else {
        None
    };
    Ok(Json(ListPage {
        folder: folder.map(String::from).unwrap_or_default(),
        entries: rows.iter().map(FileView::from).collect(),
        next_cursor,
    }))
}

/// `POST /files/folder/create` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FolderCreate {
    /// The folder's path; missing parents are created.
    pub path: String,
}

/// Creates a folder (and its missing parents). It shows in listings while empty.
#[utoipa::path(post, path = "/files/folder/create", tag = "files",
    security(("bearer" = [])),
    request_body = FolderCreate,
    responses(
        (status = 201, description = "Created", body = FileView),
        (status = 200, description = "It already existed", body = FileView),
        (status = 400, description = "Bad path (`invalid_path`)", body = Problem),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 409, description = "A file is in the way (`not_a_folder`)", body = Problem)))]
pub async fn folder_create(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<FolderCreate>,
) -> ApiResult<(StatusCode, Json<FileView>)> {
    let path = parse_path("path", &req.path)?;
    let created = st
        .repo
        .folder_create(&caller.tenant, &path, Utc::now())
        .await?;
    let rec = entry(&st, &caller, &path).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(FileView::from(&rec))))
}

/// Query of `DELETE /files/folder/delete`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FolderQuery {
    /// The folder to delete with everything in it.
    pub path: String,
}

/// Deletes a folder and everything under it, in batches of 500 entries per transaction. If
/// the request is interrupted, what was deleted stays deleted and repeating it finishes the
/// job.
#[utoipa::path(delete, path = "/files/folder/delete", tag = "files",
    security(("bearer" = [])),
    params(FolderQuery),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 400, description = "Bad path (`invalid_path`)", body = Problem),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 404, description = "No such folder", body = Problem),
        (status = 409, description = "A file (`not_a_folder`)", body = Problem)))]
pub async fn folder_delete(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<FolderQuery>,
) -> ApiResult<Json<Deleted>> {
    let path = parse_path("path", &q.path)?;
    let mut out = Deleted {
        path: path.to_string(),
        deleted_files: 0,
        deleted_folders: 0,
    };
    loop {
        let step = st
            .repo
            .folder_delete_step(&caller.tenant, &path, DELETE_BATCH, gc_at(&st, Utc::now()))
            .await?;
        out.deleted_files += step.files;
        out.deleted_folders += step.folders;
        if step.done {
            return Ok(Json(out));
        }
    }
}

/// `POST /files/copy` and `POST /files/move` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// A file or folder.
    pub source: String,
    /// Where it goes (its new full path).
    pub destination: String,
    /// Replace a file at the destination (default false; folders never replace anything).
    #[serde(default)]
    pub overwrite: bool,
}

/// Result of a copy or move.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Transferred {
    /// Source path.
    pub source: String,
    /// Destination path.
    pub destination: String,
    /// Entries copied or moved (the folder itself included).
    pub entries: u64,
}

async fn transfer(
    st: &AppState,
    caller: &Caller,
    req: Transfer,
    is_move: bool,
) -> ApiResult<Json<Transferred>> {
    let from = parse_path("source", &req.source)?;
    let to = parse_path("destination", &req.destination)?;
    let now = Utc::now();
    let limit = st.cfg.files.max_tree_entries;
    let t = photo_db::Transfer {
        tenant: &caller.tenant,
        from: &from,
        to: &to,
        overwrite: req.overwrite,
        limit,
    };
    let n = if is_move {
        st.repo.file_move(&t, now, gc_at(st, now)).await?
    } else {
        st.repo.file_copy(&t, now, gc_at(st, now)).await?
    };
    Ok(Json(Transferred {
        source: from.to_string(),
        destination: to.to_string(),
        entries: n,
    }))
}

/// Copies a file or a whole folder on the server (the bytes are shared, not re-uploaded), in
/// one transaction.
#[utoipa::path(post, path = "/files/copy", tag = "files",
    security(("bearer" = [])),
    request_body = Transfer,
    responses(
        (status = 200, description = "Copied", body = Transferred),
        (status = 400, description = "Bad path (`invalid_path`)", body = Problem),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 404, description = "No such source", body = Problem),
        (status = 409, description = "Destination exists (`already_exists`) or a file is in the way (`not_a_folder`)", body = Problem),
        (status = 422, description = "Into itself (`invalid_path`), or over the entry limit (`too_many_files`)", body = Problem)))]
pub async fn copy(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<Transfer>,
) -> ApiResult<Json<Transferred>> {
    transfer(&st, &caller, req, false).await
}

/// Moves (renames) a file or a whole folder in one transaction: if anything fails, everything
/// is still at the source; there is never a moment with the file in both places or in none.
#[utoipa::path(post, path = "/files/move", tag = "files",
    security(("bearer" = [])),
    request_body = Transfer,
    responses(
        (status = 200, description = "Moved", body = Transferred),
        (status = 400, description = "Bad path (`invalid_path`)", body = Problem),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 404, description = "No such source", body = Problem),
        (status = 409, description = "Destination exists (`already_exists`) or a file is in the way (`not_a_folder`)", body = Problem),
        (status = 422, description = "Into itself (`invalid_path`), or over the entry limit (`too_many_files`)", body = Problem)))]
pub async fn move_(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<Transfer>,
) -> ApiResult<Json<Transferred>> {
    transfer(&st, &caller, req, true).await
}

/// Query of `GET /files/presigned-url/{path}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PresignQuery {
    /// Lifetime in seconds (default: the download URL lifetime; capped at the configured
    /// maximum).
    pub expires_in: Option<u64>,
    /// Serve as a download with this file name (`Content-Disposition: attachment`).
    pub attachment: Option<String>,
}

/// A signed download URL.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PresignedUrl {
    /// The file.
    pub path: String,
    /// Works without credentials until `expires_at`.
    pub url: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// A time-limited URL that downloads the file without credentials.
#[utoipa::path(get, path = "/files/presigned-url/{path}", tag = "files",
    security(("bearer" = [])),
    params(("path" = String, Path, description = "File path"), PresignQuery),
    responses(
        (status = 200, description = "The URL", body = PresignedUrl),
        (status = 400, description = "Bad path (`invalid_path`) or attachment name", body = Problem),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 404, description = "No such file", body = Problem),
        (status = 409, description = "A folder (`is_a_folder`)", body = Problem)))]
pub async fn presigned_url(
    State(st): State<AppState>,
    caller: Caller,
    Path(p): Path<PathParam>,
    ApiQuery(q): ApiQuery<PresignQuery>,
) -> ApiResult<Json<PresignedUrl>> {
    let path = parse_path("path", &p.path)?;
    let f = entry(&st, &caller, &path).await?;
    let (Some(key), false) = (f.object_key.as_ref(), f.is_folder) else {
        return Err(conflict(&FileConflict::IsFolder(path.to_string())));
    };
    let max = st.cfg.files.max_url_ttl.as_secs().max(1);
    let secs = q
        .expires_in
        .unwrap_or(st.cfg.download_url_ttl.as_secs())
        .clamp(1, max);
    let expires_at = Utc::now() + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(1));
    let expires_at = DateTime::from_timestamp(expires_at.timestamp(), 0).unwrap_or(expires_at);
    let url = match &q.attachment {
        None => st.store.presign_get(Bucket::Processed, key, expires_at),
        Some(name) => {
            photo_core::key::validate_segment(name).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidPath,
                    format!("attachment file name: {e}"),
                )
            })?;
            st.store
                .presign_get_disposition(Bucket::Processed, key, expires_at, &attachment(name))
        }
    };
    Ok(Json(PresignedUrl {
        path: path.to_string(),
        url,
        expires_at,
    }))
}

/// Query of `POST /files/presigned-upload`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PresignUploadQuery {
    /// Where the file will be (`images/photo.jpg`).
    pub file_path: String,
    /// The exact type the browser will send (default: from the file name's extension).
    pub content_type: Option<String>,
    /// Largest accepted body (default and maximum: the file size limit).
    pub max_bytes: Option<u64>,
    /// Replace an existing file when completing (default false).
    #[serde(default)]
    pub overwrite: bool,
}

/// Where and how a browser uploads a file directly, and how to finish.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PresignedUpload {
    /// The upload target (as from `POST /uploads/init`).
    #[serde(flatten)]
    pub target: InitResponse,
    /// Where the file will be.
    pub file_path: String,
    /// After the upload, `POST` here (with credentials): the bytes are checked and the file
    /// appears at `file_path`.
    pub complete_url: String,
}

fn type_from_name(name: &str) -> Option<ContentType> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    let mime = match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "tif" | "tiff" => "image/tiff",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "avif" => "image/avif",
        _ => return None,
    };
    ContentType::parse(mime).ok()
}

/// A URL and form fields for a browser to upload a file straight to storage, the size and
/// type fixed by the signed policy. `POST` the returned `complete_url` afterwards: the bytes
/// are sniffed and checked like any upload, then the file appears at `file_path`.
#[utoipa::path(post, path = "/files/presigned-upload", tag = "files",
    security(("bearer" = [])),
    params(PresignUploadQuery),
    responses(
        (status = 201, description = "Upload target", body = PresignedUpload),
        (status = 400, description = "Bad path (`invalid_path`)", body = Problem),
        (status = 401, description = "Missing or invalid credentials", body = Problem),
        (status = 409, description = "A file exists there and overwrite is false (`already_exists`), or a folder is in the way", body = Problem),
        (status = 422, description = "Unknown or unsupported type (`unsupported_content_type`), max_bytes out of range (`max_bytes_too_large`)", body = Problem)))]
pub async fn presigned_upload(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PresignUploadQuery>,
) -> ApiResult<(StatusCode, Json<PresignedUpload>)> {
    let path = parse_path("file_path", &q.file_path)?;
    match st.repo.file_get(&caller.tenant, &path).await? {
        Some(e) if e.is_folder => return Err(conflict(&FileConflict::IsFolder(path.to_string()))),
        Some(_) if !q.overwrite => return Err(conflict(&FileConflict::Exists(path.to_string()))),
        _ => {}
    }
    let declared = match &q.content_type {
        Some(c) => ContentType::parse(c).ok(),
        None => type_from_name(path.name()),
    }
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::UnsupportedContentType,
            "give content_type (an image type) or a file name with an image extension",
        )
    })?;
    let limit = st.cfg.files.max_file_size;
    let max_bytes = q.max_bytes.unwrap_or(limit);
    if max_bytes == 0 || max_bytes > limit {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::MaxBytesTooLarge,
            format!("max_bytes must be 1..={limit}"),
        ));
    }
    let upload_id = photo_core::UploadId::new();
    let key = crate::routes::uploads::upload_key(&st, &caller.tenant, upload_id);
    let now = Utc::now();
    let url_expires_at =
        now + chrono::Duration::from_std(st.cfg.presign_expires).unwrap_or_default();
    let url_expires_at =
        DateTime::from_timestamp(url_expires_at.timestamp(), 0).unwrap_or(url_expires_at);
    st.repo
        .insert_upload(&NewUpload {
            upload_id,
            tenant: caller.tenant.clone(),
            key: key.clone(),
            declared,
            max_bytes,
            filename: Some(path.name().to_owned()),
            created_at: now,
            url_expires_at,
            expires_at: now + chrono::Duration::from_std(st.cfg.raw_ttl).unwrap_or_default(),
            file_path: Some(path.clone()),
            file_overwrite: q.overwrite,
            eager_jobs: Vec::new(),
        })
        .await?;
    let id = upload_id.to_string();
    let target = st.store.presign_upload(&UploadPolicy {
        upload_id: &id,
        key: &key,
        content_type: declared.mime(),
        max_bytes,
        expires_at: url_expires_at,
    });
    Ok((
        StatusCode::CREATED,
        Json(PresignedUpload {
            target: InitResponse {
                upload_id: id.clone(),
                quarantined: key.is_quarantined(),
                key: key.to_string(),
                method: target.method.to_owned(),
                url: target.url,
                fields: target.fields,
                headers: target.headers,
                expires_at: url_expires_at,
                max_bytes,
                content_type: declared.mime().to_owned(),
            },
            file_path: path.to_string(),
            complete_url: format!("/uploads/{id}/complete"),
        }),
    ))
}

/// Turns a ready upload made through `POST /files/presigned-upload` into its file: streams the
/// raw object into the file area (under a key derived from the upload id, so repeating this is
/// harmless) and records it. Called by upload completion.
pub(crate) async fn promote_upload(
    st: &AppState,
    up: &photo_db::Upload,
) -> ApiResult<Option<FileRecord>> {
    let Some(path) = &up.file_path else {
        return Ok(None);
    };
    let Some(ct) = up.content_type else {
        return Ok(None);
    };
    let id = up.upload_id.to_string().replace('-', "");
    let key = ObjectKey::tenant_file(&up.tenant, &id, ct.extension())
        .map_err(|e| ApiError::internal("file key", &e))?;
    if let Some(f) = st.repo.file_get(&up.tenant, path).await?
        && f.object_key.as_ref() == Some(&key)
    {
        return Ok(Some(f));
    }
    let now = Utc::now();
    st.repo
        .file_object_intent(&key, now + chrono::Duration::hours(24))
        .await?;
    let src = match st.store.open(Bucket::Raw, &up.key).await {
        Ok(o) => o,
        Err(StoreError::NotFound) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::UploadMissing,
                "the uploaded object is gone (expired); upload again",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let (body, hasher) = hashed(src.body);
    let size = st
        .store
        .put_stream(Bucket::Processed, &key, Box::pin(body), up.max_bytes)
        .await?;
    let etag = finish(&hasher);
    let new = NewFile {
        tenant: up.tenant.clone(),
        path: path.clone(),
        object_key: key.clone(),
        size,
        content_type: ct,
        etag,
        width: up.width,
        height: up.height,
        metadata: BTreeMap::new(),
    };
    let now = Utc::now();
    match st
        .repo
        .file_put(&new, up.file_overwrite, now, gc_at(st, now))
        .await
    {
        Ok(rec) => {
            // The raw copy is no longer needed.
            if let Err(e) = st.store.delete(Bucket::Raw, &up.key).await {
                tracing::debug!(error = %e, "raw object left for the sweeper");
            }
            Ok(Some(rec))
        }
        Err(e) => {
            abandon(st, &key).await;
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap_or(header::RANGE),
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        m
    }

    #[test]
    fn ranges_resolve_like_rfc_9110() {
        let e = "\"x\"";
        assert_eq!(byte_range(&h(&[]), 100, e), Ok(None));
        assert_eq!(
            byte_range(&h(&[("range", "bytes=0-9")]), 100, e),
            Ok(Some(0..10))
        );
        assert_eq!(
            byte_range(&h(&[("range", "bytes=90-")]), 100, e),
            Ok(Some(90..100))
        );
        assert_eq!(
            byte_range(&h(&[("range", "bytes=-10")]), 100, e),
            Ok(Some(90..100))
        );
        assert_eq!(
            byte_range(&h(&[("range", "bytes=-1000")]), 100, e),
            Ok(Some(0..100))
        );
        assert_eq!(
            byte_range(&h(&[("range", "bytes=95-1000")]), 100, e),
            Ok(Some(95..100))
        );
        assert_eq!(byte_range(&h(&[("range", "bytes=100-")]), 100, e), Err(()));
        assert_eq!(byte_range(&h(&[("range", "bytes=-0")]), 100, e), Err(()));
        assert_eq!(
            byte_range(&h(&[("range", "bytes=0-1,5-6")]), 100, e),
            Ok(None)
        );
        assert_eq!(byte_range(&h(&[("range", "items=0-1")]), 100, e), Ok(None));
        assert_eq!(byte_range(&h(&[("range", "bytes=5-1")]), 100, e), Ok(None));
        assert_eq!(byte_range(&h(&[("range", "bytes=a-b")]), 100, e), Ok(None));
        assert_eq!(
            byte_range(
                &h(&[("range", "bytes=0-9"), ("if-range", "\"old\"")]),
                100,
                e
            ),
            Ok(None),
            "a stale If-Range gets the whole file"
        );
        assert_eq!(
            byte_range(&h(&[("range", "bytes=0-9"), ("if-range", e)]), 100, e),
            Ok(Some(0..10))
        );
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let e = "\"abc\"";
        assert!(none_match(&h(&[("if-none-match", "\"abc\"")]), e));
        assert!(none_match(&h(&[("if-none-match", "\"x\", W/\"abc\"")]), e));
        assert!(none_match(&h(&[("if-none-match", "*")]), e));
        assert!(!none_match(&h(&[("if-none-match", "\"abd\"")]), e));
        assert!(!none_match(&h(&[]), e));
    }

    #[test]
    fn metadata_is_bounded_and_clean() {
        assert!(parse_metadata(r#"{"camera":"X100","album.id":"7"}"#).is_ok());
        assert!(parse_metadata(r#"{"a b":"x"}"#).is_err());
        assert!(parse_metadata(r#"{"a":"line\nbreak"}"#).is_err());
        assert!(parse_metadata(r#"{"a":1}"#).is_err());
        assert!(parse_metadata("[]").is_err());
        let many: BTreeMap<String, String> = (0..=MAX_META_ENTRIES)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        assert!(parse_metadata(&serde_json::to_string(&many).unwrap_or_default()).is_err());
        assert!(
            parse_metadata(&format!(r#"{{"a":"{}"}}"#, "v".repeat(MAX_META_VALUE + 1))).is_err()
        );
    }

    #[test]
    fn attachment_names_are_quoted_safely() {
        assert_eq!(
            attachment("a \"b\".jpg"),
            "attachment; filename=\"a _b_.jpg\"; filename*=UTF-8''a%20%22b%22.jpg"
        );
        assert!(attachment("caf\u{e9}.jpg").contains("filename*=UTF-8''caf%C3%A9.jpg"));
    }
}
