//! The API's errors and how each becomes a JSON response.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cacheon_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// A bad parameter; the message names it.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// A part of the host this API relies on is not configured.
    #[error("{0}")]
    Unavailable(&'static str),
    /// The log source failed; the detail is logged, not shown.
    #[error("log source unavailable")]
    Logs(String),
    /// The store failed; the detail is logged, not shown.
    #[error("internal error")]
    Store(#[from] StoreError),
}

impl ApiError {
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Logs(_) => StatusCode::BAD_GATEWAY,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Store(e) => tracing::error!(error = %e, "status API: store query failed"),
            Self::Logs(e) => tracing::warn!(error = %e, "status API: log source failed"),
            _ => {}
        }
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        (self.status(), body).into_response()
    }
}
