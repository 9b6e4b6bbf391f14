//! `GET /v1/events`: the log as Server-Sent Events, filtered to the caller's own events
//! (the envelope's actor), each with the stream sequence as its SSE id so a client
//! resumes with `Last-Event-ID`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use weir_journal::{Follow, Recorded, Start};

use crate::auth::Caller;
use crate::views::{ErrorBody, EventView, EventsQuery};
use crate::{ApiError, AppState};

pub fn event_view(r: &Recorded) -> EventView {
    let env = &r.envelope;
    EventView {
        seq: r.seq,
        kind: env.kind().as_str().to_owned(),
        subject: r.subject.clone(),
        event_id: env.event_id.to_string(),
        correlation_id: env.correlation_id.to_string(),
        occurred_at: env.occurred_at.to_string(),
        stored_at: r.stored_at.to_string(),
        summary: env.event.summary(),
        event: serde_json::to_value(&env.event).unwrap_or(serde_json::Value::Null),
    }
}

/// Live events of the caller. Starts after `Last-Event-ID` (or `?after=`), else with
/// events appended from now on.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(EventsQuery, ("Last-Event-ID" = Option<u64>, Header, description = "resume after this stream sequence")),
    responses((status = 200, description = "text/event-stream; each `data:` is an EventView", content_type = "text/event-stream", body = EventView),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    Caller(owner): Caller,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(q) = query?;
    let last_id = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a stream sequence"))?,
        ),
        None => q.after,
    };
    let start = match last_id {
        Some(seq) => Start::Sequence(seq.saturating_add(1)),
        None => Start::New,
    };
    let events = state
        .journal()
        .follow(Follow {
            filters: Vec::new(),
            start,
        })
        .await?;
    let stop = state.stopping();
    let stream = events
        .filter_map(move |item| {
            let owner = owner.clone();
            async move {
                let r = item.ok()?;
                if r.envelope.actor != owner {
                    return None;
                }
                let view = event_view(&r);
                let data = serde_json::to_string(&view).ok()?;
                Some(Ok(SseEvent::default()
                    .id(r.seq.to_string())
                    .event(view.kind)
                    .data(data)))
            }
        })
        .take_until(stop);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
