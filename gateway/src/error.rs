//! The one error type handlers return: a status and a message, rendered as
//! `{"error": "…"}` so every failure has the same JSON shape.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::views::ErrorBody;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, m)
    }
    pub fn too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the upload is larger than the limit of {limit} bytes"),
        )
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, m)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            // `?`: the message may quote the request; Debug escapes its control characters.
            tracing::error!(status = %self.status, error = ?self.message, "request failed");
        }
        let refused_body = self.status == StatusCode::PAYLOAD_TOO_LARGE;
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if refused_body {
            // The rest of the body is not read: the connection cannot carry another
            // request, and the client must know not to reuse it.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl From<weir_projections::Error> for ApiError {
    fn from(e: weir_projections::Error) -> Self {
        if e.is_transient() {
            Self::unavailable(e.to_string())
        } else {
            Self::internal(e.to_string())
        }
    }
}

impl From<weir_journal::ReadError> for ApiError {
    fn from(e: weir_journal::ReadError) -> Self {
        match e {
            weir_journal::ReadError::Nats(_) => Self::unavailable(e.to_string()),
            weir_journal::ReadError::Decode { .. } => Self::internal(e.to_string()),
        }
    }
}

impl From<weir_journal::AppendError> for ApiError {
    fn from(e: weir_journal::AppendError) -> Self {
        if e.is_transient() {
            Self::unavailable(e.to_string())
        } else {
            Self::internal(e.to_string())
        }
    }
}

impl From<weir_services::store::StoreError> for ApiError {
    fn from(e: weir_services::store::StoreError) -> Self {
        if e.is_transient() {
            Self::unavailable(e.to_string())
        } else {
            Self::internal(e.to_string())
        }
    }
}

/// A JSON body that does not parse is the caller's mistake: 400 with serde's reason.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}
