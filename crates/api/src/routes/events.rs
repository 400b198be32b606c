//! Event streams (server-sent events): every status change of the caller's jobs, from
//! `job_events`, resumable with `Last-Event-ID`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use photo_core::{JobId, JobStatus, TenantId};
use photo_db::StreamEvent;
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// How often an idle stream looks for new events.
const POLL: Duration = Duration::from_millis(200);
/// Events read per query.
const PAGE: u32 = 200;

/// Where a stream starts.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Start after this event id (as `Last-Event-ID` does; the header wins). Default: from the
    /// beginning (`0`).
    pub after: Option<i64>,
}

fn start_after(headers: &HeaderMap, q: &StreamQuery) -> ApiResult<i64> {
    let bad = || ApiError::bad_request("Last-Event-ID (or after) must be a non-negative integer");
    let from_header = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|s| s.len() <= 20)
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(bad)
        })
        .transpose()?;
    let after = from_header.or(q.after).unwrap_or(0);
    if after < 0 {
        return Err(bad());
    }
    Ok(after)
}

struct Cursor {
    st: AppState,
    tenant: TenantId,
    job: Option<JobId>,
    last: i64,
    buffer: VecDeque<StreamEvent>,
    /// A job's stream ends once its job reached a terminal status and nothing is pending.
    finished: bool,
}

fn stream(cursor: Cursor) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(ev) = c.buffer.pop_front() {
                c.last = ev.seq;
                if c.job.is_some()
                    && c.buffer.is_empty()
                    && JobStatus::parse(&ev.status).is_some_and(JobStatus::is_terminal)
                {
                    c.finished = true;
                }
                let event = Event::default()
                    .id(ev.seq.to_string())
                    .event("job")
                    .json_data(&ev)
                    .unwrap_or_else(|_| Event::default().comment("unserialisable event"));
                return Some((Ok(event), c));
            }
            if c.finished {
                // Anything newer (a retry) is picked up by a reconnect with Last-Event-ID.
                return None;
            }
            match c.st.repo.events_after(&c.tenant, c.job, c.last, PAGE).await {
                Ok(evs) if !evs.is_empty() => c.buffer.extend(evs),
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    tracing::warn!(error = %e, "reading events failed; retrying");
                    tokio::time::sleep(POLL * 5).await;
                }
            }
        }
    })
}

/// Every status change of the caller's jobs as server-sent events (`event: job`, `id` = the
/// event's sequence number, `data` = `{"seq","job_id","status","attempt","message"?,"at"}`), in
/// order, from the start or after `Last-Event-ID`: a client that reconnects with the last id it
/// saw gets every later event once — no gaps, no duplicates. Comments keep idle connections
/// alive.
#[utoipa::path(get, path = "/events", tag = "events",
    security(("bearer" = [])),
    params(StreamQuery, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses(
        (status = 200, description = "An endless `text/event-stream`", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad Last-Event-ID", body = Problem),
        (status = 401, description = "Missing or invalid API key", body = Problem)))]
pub async fn tenant(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let last = start_after(&headers, &q)?;
    Ok(Sse::new(stream(Cursor {
        st,
        tenant: caller.tenant,
        job: None,
        last,
        buffer: VecDeque::new(),
        finished: false,
    }))
    .keep_alive(KeepAlive::default()))
}

/// One job's status changes as server-sent events (as `GET /events`); the stream ends after
/// the job's terminal event.
#[utoipa::path(get, path = "/jobs/{job_id}/events", tag = "events",
    security(("bearer" = [])),
    params(("job_id" = String, Path, description = "Job id"), StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses(
        (status = 200, description = "A `text/event-stream`", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad Last-Event-ID", body = Problem),
        (status = 401, description = "Missing or invalid API key", body = Problem),
        (status = 404, description = "Unknown job (or another tenant's)", body = Problem)))]
pub async fn job(
    State(st): State<AppState>,
    caller: Caller,
    Path(job_id): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let id: JobId = job_id.parse().map_err(|_| ApiError::not_found("job"))?;
    st.repo
        .get_job(&caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("job"))?;
    let last = start_after(&headers, &q)?;
    Ok(Sse::new(stream(Cursor {
        st,
        tenant: caller.tenant,
        job: Some(id),
        last,
        buffer: VecDeque::new(),
        finished: false,
    }))
    .keep_alive(KeepAlive::default()))
}
