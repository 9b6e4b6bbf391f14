//! The caller's notification feed and marking one read (a `NotificationRead` event; the
//! projection flips the read state when it applies it).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, State};
use weir_events::{Aggregate, Envelope, Event, EventId, NotificationRead, UploadId};
use weir_journal::{AppendOutcome, Expect};

use crate::auth::Caller;
use crate::views::{ErrorBody, MarkedRead, NotificationList, NotificationQuery};
use crate::{ApiError, AppState};

#[utoipa::path(get, path = "/v1/notifications", tag = "notifications",
    params(NotificationQuery),
    responses((status = 200, body = NotificationList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(owner): Caller,
    query: Result<Query<NotificationQuery>, QueryRejection>,
) -> Result<Json<NotificationList>, ApiError> {
    let Query(q) = query?;
    let all =
        weir_projections::notifications(state.db(), &owner, q.unread.unwrap_or(false)).await?;
    let unread = all.iter().filter(|n| !n.read).count() as u64;
    Ok(Json(NotificationList {
        unread,
        notifications: all.into_iter().map(Into::into).collect(),
    }))
}

/// Mark a notification read. Idempotent: marking it again appends nothing new.
#[utoipa::path(post, path = "/v1/notifications/{id}/read", tag = "notifications",
    params(("id" = String, Path, description = "notification id (the id of the event that raised it)")),
    responses((status = 200, body = MarkedRead), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn mark_read(
    State(state): State<AppState>,
    Caller(owner): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<MarkedRead>, ApiError> {
    let not_found = || ApiError::not_found(format!("no notification {id:?}"));
    let notification: EventId =
        serde_json::from_value(serde_json::Value::String(id.clone())).map_err(|_| not_found())?;
    let all = weir_projections::notifications(state.db(), &owner, false).await?;
    let Some(n) = all.iter().find(|n| n.id == notification.to_string()) else {
        return Err(not_found());
    };
    let upload: UploadId = n.upload_id.parse().unwrap_or(crate::tokens::NO_UPLOAD);
    // Caused by the notification's event: marking it twice is one event.
    let envelope = Envelope::new(
        Aggregate::Owner(owner.clone()),
        owner.clone(),
        upload,
        Some(notification),
        Event::NotificationRead(NotificationRead {
            owner,
            notification,
        }),
    );
    match state.journal().append(&envelope, Expect::Any).await? {
        AppendOutcome::Appended { seq, .. } => Ok(Json(MarkedRead {
            id: n.id.clone(),
            read: true,
            seq,
        })),
        AppendOutcome::WrongLastSequence => Err(ApiError::internal(
            "an unconditional append reported a wrong last sequence",
        )),
    }
}
