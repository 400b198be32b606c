//! Logs, traces and the span-derived metrics of one process.
//!
//! - Logs: text (ANSI colours only on a terminal) or one JSON object per line, filtered by
//!   `LOG_LEVEL`; JSON lines carry the fields of every enclosing span (`request_id`, `tenant`,
//!   `job_id`, …) under `spans`.
//! - Traces: OpenTelemetry spans for requests, jobs and their steps, scans, and every storage
//!   and database call, exported over OTLP/HTTP (protobuf or JSON) when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; off
//!   otherwise. A request's `traceparent` header is honoured, and a job joins the trace of the
//!   request that submitted it.
//! - Metrics: database call latencies and failures come from the `db.*` spans the repositories
//!   open (see [`DbMetrics`]).

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::Context as _;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Metadata, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{Config, LogFormat, OtlpProtocol};

/// Flushes buffered spans when dropped (at the end of `main`).
#[must_use]
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = p.shutdown();
        }
    }
}

/// Spans of our own crates that traces carry: everything at info and above, plus the
/// debug-level spans of storage and database calls.
fn traced(m: &Metadata<'_>) -> bool {
    m.target().starts_with("photo_") && (*m.level() <= Level::INFO || is_call_span(m.name()))
}

fn is_call_span(name: &str) -> bool {
    name.starts_with("db.") || name.starts_with("storage.")
}

/// Installs the process's subscriber. `rt` runs the OTLP exporter's HTTP requests.
pub fn init(cfg: &Config, rt: &tokio::runtime::Handle, component: &str) -> anyhow::Result<Guard> {
    let filter = EnvFilter::try_new(&cfg.log_level).with_context(|| {
        format!(
            "LOG_LEVEL {:?} is not a valid level or filter",
            cfg.log_level
        )
    })?;
    let fmt = match cfg.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let db_metrics = DbMetrics.with_filter(filter_fn(|m| {
        (m.is_span() && m.name().starts_with("db."))
            || (m.is_event()
                && m.target().starts_with("photo_db")
                && m.fields().field("error").is_some())
    }));
    let (otel, provider) = match otlp_provider(cfg, rt, component)? {
        Some(provider) => {
            let tracer = provider.tracer("photo-api");
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(filter_fn(traced));
            photo_core::telemetry::install(Box::new(OtelBridge));
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    Registry::default()
        .with(fmt)
        .with(db_metrics)
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("initialising logging: {e}"))?;
    Ok(Guard(provider))
}

fn otlp_provider(
    cfg: &Config,
    rt: &tokio::runtime::Handle,
    component: &str,
) -> anyhow::Result<Option<SdkTracerProvider>> {
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    let traces_env = std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
    if cfg.otlp_endpoint.is_none() && !traces_env {
        return Ok(None);
    }
    let target = cfg
        .otlp_endpoint
        .clone()
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").ok())
        .unwrap_or_default();
    if !target.starts_with("http://") {
        anyhow::bail!(
            "the OTLP endpoint {target:?} must be an http:// URL (an OpenTelemetry collector's \
             OTLP/HTTP port, usually a local sidecar; HTTPS is not built in)"
        );
    }
    let protocol = match cfg.otlp_protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_http_client(HyperClient::new(rt.clone()));
    if let (Some(base), false) = (&cfg.otlp_endpoint, traces_env) {
        // As the OTLP spec says of OTEL_EXPORTER_OTLP_ENDPOINT: the signal's path is appended.
        builder = builder.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
    }
    let exporter = builder
        .build()
        .context("configuring the OTLP trace exporter")?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "photo-api".into());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_attribute(opentelemetry::KeyValue::new(
            "photo_api.component",
            component.to_owned(),
        ))
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    ))
}

/// Carries W3C trace context between the service's spans and the job rows.
struct OtelBridge;

impl photo_core::telemetry::TraceBridge for OtelBridge {
    fn traceparent(&self, span: &tracing::Span) -> Option<String> {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| {
            format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            )
        })
    }

    fn set_parent(&self, span: &tracing::Span, traceparent: &str) {
        let carrier: std::collections::HashMap<String, String> =
            [("traceparent".to_owned(), traceparent.to_owned())].into();
        let cx = TraceContextPropagator::new().extract(&carrier);
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
}

/// Sends the exporter's requests with hyper on the service's tokio runtime (the batch span
/// processor runs on a thread of its own, outside any runtime).
#[derive(Debug, Clone)]
struct HyperClient {
    rt: tokio::runtime::Handle,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

impl HyperClient {
    fn new(rt: tokio::runtime::Handle) -> Self {
        let _guard = rt.enter();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        HyperClient { rt, client }
    }
}

/// Largest collector answer read.
const MAX_ANSWER: usize = 1 << 20;

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for HyperClient {
    async fn send_bytes(
        &self,
        request: axum::http::Request<bytes::Bytes>,
    ) -> Result<axum::http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        use http_body_util::BodyExt;
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let req = axum::http::Request::from_parts(parts, http_body_util::Full::new(body));
        let task = self.rt.spawn(async move {
            let res = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
                .await
                .map_err(|_| "the OTLP collector did not answer in 10 s".to_string())?
                .map_err(|e| e.to_string())?;
            let (parts, body) = res.into_parts();
            let body = http_body_util::Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>(axum::http::Response::from_parts(parts, body))
        });
        match task.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(e.to_string().into()),
        }
    }
}

/// Times the `db.<operation>` spans the repositories open into
/// `photo_api_db_operation_duration_seconds{operation}`, and counts those that ended in an
/// error (the span's `error` event) into `photo_api_db_errors_total{operation}`.
pub struct DbMetrics;

struct Started(Instant);
struct Failed;

impl<S> Layer<S> for DbMetrics
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if attrs.metadata().name().starts_with("db.")
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().fields().field("error").is_some()
            && let Some(span) = ctx.event_span(event)
            && span.name().starts_with("db.")
        {
            span.extensions_mut().insert(Failed);
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(op) = span.metadata().name().strip_prefix("db.") else {
            return;
        };
        let ext = span.extensions();
        let m = photo_core::metrics::metrics();
        if let Some(Started(t)) = ext.get::<Started>() {
            m.db_duration.observe([op], t.elapsed().as_secs_f64());
        }
        if ext.get::<Failed>().is_some() {
            m.db_errors.inc([op]);
        }
    }
}
