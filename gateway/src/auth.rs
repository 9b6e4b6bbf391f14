//! The caller: every API request carries `Authorization: Bearer <token>`; the token
//! maps to an owner, and handlers see only that owner's things.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use weir_events::Owner;

use crate::{ApiError, AppState};

/// The owner the request acts for.
#[derive(Debug, Clone)]
pub struct Caller(pub Owner);

/// The bearer token of a request, if it has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?;
    let text = value.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// `access_token=` in the query: for EventSource, which cannot set headers.
fn query_token(parts: &Parts) -> Option<String> {
    let query = parts.uri.query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "access_token").then(|| v.to_owned())
    })
}

pub async fn resolve(state: &AppState, token: &str) -> Result<Owner, ApiError> {
    match state.tokens().owner_of(token).await? {
        Some(owner) => Ok(owner),
        None => Err(ApiError::unauthorized("unknown or revoked token")),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = match bearer(parts) {
            Some(t) => t.to_owned(),
            None if parts.uri.path() == "/v1/events" => query_token(parts).ok_or_else(|| {
                ApiError::unauthorized("missing bearer token (Authorization: Bearer …)")
            })?,
            None => {
                return Err(ApiError::unauthorized(
                    "missing bearer token (Authorization: Bearer …)",
                ));
            }
        };
        resolve(state, &token).await.map(Caller)
    }
}
