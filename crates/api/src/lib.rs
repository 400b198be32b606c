//! The HTTP API of photo-api: the axum router, handlers per area, API-key auth, problem+json
//! errors, request ids and the OpenAPI document.

pub mod auth;
pub mod edge;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod jwt;
pub mod metrics;
pub mod presets;
pub mod routes;
pub mod scan;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use photo_core::ErrorCode;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, REQUEST_ID};
pub use crate::state::{
    ApiConfig, AppState, FilesConfig, HealthCheck, JobDispatcher, WorkerHealth, WorkerState,
};

const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

#[derive(OpenApi)]
#[openapi(
    info(title = "photo-api", description = "Self-hostable photo processing: uploads, durable jobs, signed downloads."),
    modifiers(&BearerAuth),
    components(schemas(error::Problem, photo_core::ErrorCode, photo_core::VariantsParams,
        photo_core::VariantParams, photo_core::AnalyzeParams, routes::jobs::AnalyzeResult, presets::EagerJob,
        routes::uploads::QueuedJob))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Router settings that are not handler state.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Timeout of ordinary requests (uploads are bounded by size and the URL's expiry instead).
    pub request_timeout: Duration,
    /// Body limit of the upload route (max upload size plus form overhead).
    pub upload_body_limit: usize,
    /// Body limit of `POST /files/upload` (largest file plus form overhead).
    pub file_body_limit: usize,
    /// Body limit of `POST /files/upload-multiple`.
    pub files_body_limit: usize,
    /// Serve `GET /metrics` here (false when metrics have a listener of their own).
    pub metrics_route: bool,
    /// Other processes' metrics (the supervised worker) merged into `/metrics`.
    pub metrics_extra: Option<Arc<dyn metrics::MetricsSource>>,
}

/// A router with only `GET /metrics`, for a listener of its own.
pub fn metrics_router(state: metrics::MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::scrape))
        .with_state(state)
}

/// The OpenAPI document and the router without state applied, split for tests.
pub fn openapi_and_router() -> (utoipa::openapi::OpenApi, OpenApiRouter<AppState>) {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::health::healthz))
        .routes(routes!(routes::health::health))
        .routes(routes!(routes::uploads::init))
        .routes(routes!(routes::uploads::get))
        .routes(routes!(routes::uploads::complete))
        .routes(routes!(routes::jobs::submit, routes::jobs::list))
        .routes(routes!(routes::jobs::get))
        .routes(routes!(routes::files::delete_multiple))
        .routes(routes!(routes::files::list))
        .routes(routes!(routes::files::folder_create))
        .routes(routes!(routes::files::folder_delete))
        .routes(routes!(routes::files::copy))
        .routes(routes!(routes::files::move_))
        .routes(routes!(routes::files::presigned_upload))
        .routes(routes!(routes::admin::create_key, routes::admin::list_keys))
        .routes(routes!(routes::admin::revoke_key))
        .routes(routes!(routes::admin::audit_log))
        .routes(routes!(routes::tenants::create, routes::tenants::list))
        .routes(routes!(routes::tenants::get, routes::tenants::update))
        .routes(routes!(routes::tenants::suspend))
        .routes(routes!(routes::tenants::reactivate))
        .routes(routes!(routes::jobs::cancel))
        .routes(routes!(routes::jobs::retry))
        .routes(routes!(routes::jobs::redrive))
        .routes(routes!(routes::events::tenant))
        .routes(routes!(routes::events::job))
        .routes(routes!(routes::webhooks::create, routes::webhooks::list))
        .routes(routes!(routes::webhooks::delete))
        .routes(routes!(routes::webhooks::deliveries))
        .routes(routes!(routes::batches::get))
        .routes(routes!(routes::batches::jobs))
        .routes(routes!(routes::batches::cancel))
        .split_for_parts();
    (api, OpenApiRouter::from(router))
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (mut api, _) = openapi_and_router();
    // Routes with their own body limit and path syntax are registered separately below; their
    // documentation is merged here so the document covers every route.
    let (_, extra) = OpenApiRouter::<AppState>::new()
        .routes(routes!(routes::uploads::put_object))
        .routes(routes!(routes::objects::download))
        .routes(routes!(routes::files::upload))
        .routes(routes!(routes::files::upload_multiple))
        .routes(routes!(routes::files::download))
        .routes(routes!(routes::files::metadata))
        .routes(routes!(routes::files::delete))
        .routes(routes!(routes::files::presigned_url))
        .routes(routes!(routes::batches::create))
        .split_for_parts();
    api.merge(extra);
    api
}

/// Builds the whole application.
pub fn app(state: AppState, cfg: RouterConfig) -> Router {
    let edge = state.edge.clone();
    let doc = Arc::new(serde_json::to_value(openapi()).unwrap_or_default());
    let (_, api) = openapi_and_router();
    let api: Router<AppState> = Router::from(api)
        // These bodies are small and read at once: running out of time here means the server
        // (a dependency) was slow, so 503 + Retry-After rather than 408.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            cfg.request_timeout,
        ))
        .layer(DefaultBodyLimit::max(64 * 1024));
    let uploads: Router<AppState> = Router::new()
        .route(
            "/uploads/{upload_id}/object",
            axum::routing::post(routes::uploads::put_object),
        )
        .layer(DefaultBodyLimit::max(cfg.upload_body_limit))
        // Bounded by size, but a client trickling bytes must not hold a connection forever.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            cfg.request_timeout * 20,
        ));
    // The file routes whose paths contain `/` ({*path}) or whose bodies are large.
    let file_paths: Router<AppState> = Router::new()
        .route("/files/download/{*path}", get(routes::files::download))
        .route("/files/metadata/{*path}", get(routes::files::metadata))
        .route(
            "/files/delete/{*path}",
            axum::routing::delete(routes::files::delete),
        )
        .route(
            "/files/presigned-url/{*path}",
            get(routes::files::presigned_url),
        )
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            cfg.request_timeout,
        ));
    let file_uploads: Router<AppState> = Router::new()
        .route(
            "/files/upload",
            axum::routing::post(routes::files::upload)
                .layer(DefaultBodyLimit::max(cfg.file_body_limit)),
        )
        .route(
            "/files/upload-multiple",
            axum::routing::post(routes::files::upload_multiple)
                .layer(DefaultBodyLimit::max(cfg.files_body_limit)),
        )
        // Bounded by size, but a client trickling bytes must not hold a connection forever.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            cfg.request_timeout * 40,
        ));
    // A batch body holds up to PHOTO_API_MAX_BATCH_SIZE items: its own, larger body limit.
    let batches: Router<AppState> = Router::new()
        .route("/batches", axum::routing::post(routes::batches::create))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            cfg.request_timeout * 4,
        ))
        .layer(DefaultBodyLimit::max(routes::batches::BODY_LIMIT));
    let objects: Router<AppState> = Router::new()
        .route("/objects/{bucket}/{*key}", get(routes::objects::download))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            cfg.request_timeout * 10,
        ));
    let docs = Router::new()
        .route("/openapi.json", get(routes::docs::openapi))
        .route("/docs", get(routes::docs::page))
        .with_state(doc);
    let metrics_route = if cfg.metrics_route {
        metrics_router(metrics::MetricsState {
            app: state.clone(),
            extra: cfg.metrics_extra.clone(),
        })
    } else {
        Router::new()
    };
    api.merge(uploads)
        .merge(file_paths)
        .merge(file_uploads)
        .merge(batches)
        .merge(objects)
        .with_state(state)
        .merge(docs)
        .merge(metrics_route)
        .route_layer(middleware::from_fn(metrics::tag_route))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(problem_for_bare_errors))
        .layer(tower::util::option_layer(edge::cors(&edge.cfg)))
        .layer(middleware::from_fn_with_state(edge, edge::edge_layer))
        .layer(middleware::from_fn(request_id_scope))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get(REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            // `tenant` is recorded once the caller is authenticated (see `auth`).
            let span = tracing::info_span!(
                "request",
                method = %req.method(),
                path = %req.uri().path(),
                request_id = %id,
                tenant = tracing::field::Empty,
            );
            // A caller's W3C trace context makes this request part of its trace.
            if let Some(tp) = req
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
            {
                photo_core::telemetry::set_parent(&span, tp);
            }
            span
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestUuid))
        .layer(middleware::from_fn(metrics::track))
}

async fn fallback() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}

/// Makes the request id available to error responses built anywhere in the handler.
async fn request_id_scope(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    REQUEST_ID.scope(id, next.run(req)).await
}

/// Errors produced by layers (timeouts, body limits) carry no body; give them the envelope.
async fn problem_for_bare_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let has_type = res.headers().contains_key(axum::http::header::CONTENT_TYPE);
    if has_type || !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let (code, detail) = match status {
        StatusCode::REQUEST_TIMEOUT => (ErrorCode::InvalidRequest, "the request took too long"),
        StatusCode::PAYLOAD_TOO_LARGE => {
            (ErrorCode::PayloadTooLarge, "the request body is too large")
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            let mut out =
                ApiError::unavailable("the request timed out waiting for a dependency; retry")
                    .into_response();
            for (k, v) in res.headers() {
                out.headers_mut().entry(k).or_insert(v.clone());
            }
            return out;
        }
        s if s.is_server_error() => (ErrorCode::Internal, "internal error"),
        _ => (ErrorCode::InvalidRequest, "bad request"),
    };
    let mut out = ApiError::new(status, code, detail).into_response();
    for (k, v) in res.headers() {
        out.headers_mut().entry(k).or_insert(v.clone());
    }
    out
}
