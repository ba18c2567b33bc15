//! The one error every `/api/v1` handler answers with: an [`ApiError`] names what went wrong
//! and its status code, and always answers the same body, `{"error": "<message>"}`.
//!
//! This file owns the mapping from a kind of failure to a status code and that body's shape;
//! it makes no decision about when a request fails, which is the handlers' business.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::alert::Refusal;

/// Why an API request was refused, with the message the client reads.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a parameter or body the API cannot use, with what is wrong with it.
    #[error("{0}")]
    BadRequest(String),
    /// 401: a write without the right bearer token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// 403: a write while `server.api_token` is not set.
    #[error("writes are disabled: set server.api_token")]
    WritesDisabled,
    /// 404: no probe, alert or silence by that name or id.
    #[error("{0}")]
    NotFound(String),
    /// 409: the alert is not in a state that allows the change.
    #[error("{0}")]
    Conflict(String),
    /// 500: the store or a blocking task failed.
    #[error("{0}")]
    Internal(String),
    /// 503: the shared database (`storage: postgres:`) is unreachable, so a change every
    /// replica must see was made nowhere.
    #[error("{0}")]
    Unavailable(String),
}

/// The body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: String,
}

impl ApiError {
    /// A failure of the daemon's own, not of the request.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::WritesDisabled => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The status and body this error answers.
    pub fn into_parts(self) -> (StatusCode, Json<ErrorBody>) {
        (
            self.status(),
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_parts().into_response()
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotFound(_) => ApiError::NotFound(r.to_string()),
            Refusal::AlreadyAcknowledged { .. } | Refusal::Resolved(_) => {
                ApiError::Conflict(r.to_string())
            }
        }
    }
}

impl From<crate::store::BackendError> for ApiError {
    fn from(e: crate::store::BackendError) -> Self {
        if e.unavailable() {
            ApiError::Unavailable(format!(
                "{e}; nothing was changed (replicas share this state, so it is not kept on one alone): try again once the database is back"
            ))
        } else {
            ApiError::internal(e)
        }
    }
}

impl From<crate::cluster::daemon::ActError> for ApiError {
    fn from(e: crate::cluster::daemon::ActError) -> Self {
        match e {
            crate::cluster::daemon::ActError::Refused(r) => r.into(),
            crate::cluster::daemon::ActError::Database(e) => ApiError::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn every_error_answers_its_status_and_an_error_body() {
        for (error, status, body) in [
            (
                ApiError::BadRequest("limit \"0\" is bad".into()),
                StatusCode::BAD_REQUEST,
                r#"{"error":"limit \"0\" is bad"}"#,
            ),
            (
                ApiError::Unauthorized,
                StatusCode::UNAUTHORIZED,
                r#"{"error":"missing or wrong bearer token"}"#,
            ),
            (
                ApiError::WritesDisabled,
                StatusCode::FORBIDDEN,
                r#"{"error":"writes are disabled: set server.api_token"}"#,
            ),
            (
                ApiError::NotFound("no alert 7".into()),
                StatusCode::NOT_FOUND,
                r#"{"error":"no alert 7"}"#,
            ),
            (
                ApiError::Conflict("resolved".into()),
                StatusCode::CONFLICT,
                r#"{"error":"resolved"}"#,
            ),
            (
                ApiError::internal("disk full"),
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":"disk full"}"#,
            ),
            (
                crate::store::BackendError::Postgres(crate::cluster::pg::PgError {
                    target: "postgres://db:5432/slowburn".into(),
                    message: "connection refused".into(),
                })
                .into(),
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"postgres postgres://db:5432/slowburn: connection refused; nothing was changed (replicas share this state, so it is not kept on one alone): try again once the database is back"}"#,
            ),
        ] {
            let response = error.into_response();
            assert_eq!(response.status(), status);
            assert_eq!(
                response.headers()[http::header::CONTENT_TYPE],
                "application/json"
            );
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(std::str::from_utf8(&bytes).unwrap(), body);
        }
    }
}
