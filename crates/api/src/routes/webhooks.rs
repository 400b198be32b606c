//! Webhooks per tenant: register URLs for job events, see their deliveries.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use photo_core::ErrorCode;
use photo_db::{Webhook, WebhookDelivery};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::jobs::unprocessable;
use crate::state::AppState;

/// Event types a webhook can subscribe to. `batch.completed` / `batch.failed` fire once per
/// batch, when its last job reaches a terminal status: `batch.failed` when any of its jobs ended
/// `failed` or `dead`, `batch.completed` otherwise (cancelled jobs included); the payload carries
/// the counts per terminal status.
pub const EVENT_TYPES: [&str; 6] = [
    "job.completed",
    "job.failed",
    "job.dead",
    "job.cancelled",
    "batch.completed",
    "batch.failed",
];
/// Most webhooks per tenant.
pub const MAX_WEBHOOKS: usize = 10;
/// Longest URL.
pub const MAX_URL: usize = 2048;

/// `POST /webhooks` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http://` or `https://` URL deliveries are POSTed to.
    pub url: String,
    /// Event types to deliver: `job.completed`, `job.failed`, `job.dead`, `job.cancelled`,
    /// `batch.completed` (every job of a batch finished, none failed or dead) and
    /// `batch.failed` (every job finished, at least one failed or dead); each batch event is
    /// sent once per batch, with `total` and `counts` per terminal status.
    pub event_types: Vec<String>,
}

/// A webhook.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    /// Id.
    pub webhook_id: String,
    /// Where deliveries go.
    pub url: String,
    /// Event types delivered.
    pub event_types: Vec<String>,
    /// The HMAC-SHA256 key of its signatures: returned once, on creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Created at.
    pub created_at: DateTime<Utc>,
}

fn hook_view(h: &Webhook, with_secret: bool) -> WebhookView {
    WebhookView {
        webhook_id: h.webhook_id.clone(),
        url: h.url.clone(),
        event_types: h.event_types.clone(),
        secret: with_secret.then(|| h.secret.clone()),
        created_at: h.created_at,
    }
}

fn valid_url(u: &str) -> bool {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    u.len() <= MAX_URL
        && rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && u.chars().all(|c| c.is_ascii_graphic())
}

/// Registers a webhook: job events of the chosen types are POSTed to `url`, signed (see the
/// README's Webhooks section). The answer holds the signing `secret`, shown only here.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = CreateWebhook,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = WebhookView),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 422, description = "Bad URL or event types, or too many webhooks (`invalid_parameters`)", body = Problem)))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<WebhookView>)> {
    if !valid_url(&req.url) {
        return Err(unprocessable(
            ErrorCode::InvalidParameters,
            format!("url must be an http:// or https:// URL of at most {MAX_URL} characters"),
        ));
    }
    let mut types = req.event_types;
    types.sort();
    types.dedup();
    if types.is_empty() || types.iter().any(|t| !EVENT_TYPES.contains(&t.as_str())) {
        return Err(unprocessable(
            ErrorCode::InvalidParameters,
            format!(
                "event_types must be a non-empty list of {}",
                EVENT_TYPES.join(", ")
            ),
        ));
    }
    if st.repo.list_webhooks(&caller.tenant).await?.len() >= MAX_WEBHOOKS {
        return Err(unprocessable(
            ErrorCode::InvalidParameters,
            format!("a tenant has at most {MAX_WEBHOOKS} webhooks; delete one first"),
        ));
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let hook = Webhook {
        webhook_id: uuid::Uuid::now_v7().to_string(),
        tenant: caller.tenant.clone(),
        url: req.url,
        event_types: types,
        secret: format!("whsec_{}", hex::encode(secret)),
        created_at: Utc::now(),
    };
    st.repo.insert_webhook(&hook).await?;
    tracing::info!(webhook_id = %hook.webhook_id, tenant = %caller.tenant, "webhook created");
    Ok((StatusCode::CREATED, Json(hook_view(&hook, true))))
}

/// The caller's webhooks (without their secrets).
#[utoipa::path(get, path = "/webhooks", tag = "webhooks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The webhooks", body = Vec<WebhookView>),
        (status = 401, description = "Missing or invalid API key", body = Problem)))]
pub async fn list(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<WebhookView>>> {
    let hooks = st.repo.list_webhooks(&caller.tenant).await?;
    Ok(Json(hooks.iter().map(|h| hook_view(h, false)).collect()))
}

/// Deletes a webhook and its delivery records; pending deliveries are not sent.
#[utoipa::path(delete, path = "/webhooks/{webhook_id}", tag = "webhooks",
    security(("bearer" = [])),
    params(("webhook_id" = String, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 404, description = "Unknown webhook (or another tenant's)", body = Problem)))]
pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Path(webhook_id): Path<String>,
) -> ApiResult<StatusCode> {
    if webhook_id.len() > 64 || !st.repo.delete_webhook(&caller.tenant, &webhook_id).await? {
        return Err(ApiError::not_found("webhook"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Paging of deliveries.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Most deliveries returned, 1..=200 (default 50), newest event first.
    pub limit: Option<u32>,
}

/// One delivery of an event to a webhook.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Id (the `Photo-Api-Webhook-Id` header).
    pub delivery_id: String,
    /// `evt_<seq>`: the event's id (the payload's `id`).
    pub event_id: String,
    /// Event type.
    pub event_type: String,
    /// `pending` (being retried), `delivered` or `failed` (gave up).
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// Next attempt, while pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// HTTP status of the last attempt.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Delivered at.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The body sent.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

fn delivery_view(d: &WebhookDelivery) -> DeliveryView {
    DeliveryView {
        delivery_id: d.delivery_id.clone(),
        event_id: format!("evt_{}", d.event_seq),
        event_type: d.event_type.clone(),
        status: d.status.clone(),
        attempts: d.attempts,
        next_attempt_at: (d.status == "pending").then_some(d.next_attempt_at),
        last_status_code: d.last_status_code,
        last_error: d.last_error.clone(),
        created_at: d.created_at,
        delivered_at: d.delivered_at,
        payload: serde_json::from_str(&d.payload).unwrap_or_default(),
    }
}

/// A webhook's deliveries and their attempts.
#[utoipa::path(get, path = "/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    security(("bearer" = [])),
    params(("webhook_id" = String, Path, description = "Webhook id"), DeliveriesQuery),
    responses(
        (status = 200, description = "Deliveries, newest event first", body = Vec<DeliveryView>),
        (status = 400, description = "Bad limit", body = Problem),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 404, description = "Unknown webhook (or another tenant's)", body = Problem)))]
pub async fn deliveries(
    State(st): State<AppState>,
    caller: Caller,
    Path(webhook_id): Path<String>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult<Json<Vec<DeliveryView>>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 200"));
    }
    if webhook_id.len() > 64 {
        return Err(ApiError::not_found("webhook"));
    }
    let list = st
        .repo
        .list_deliveries(&caller.tenant, &webhook_id, limit)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(Json(list.iter().map(delivery_view).collect()))
}
