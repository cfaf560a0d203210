//! One error type that is a response: each variant documents its status, and internal errors are
//! logged (with the request's id, from the surrounding span) but never shown to the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// One problem with a request's input, as Zod reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Issue {
    /// Where: `prompts[3]`, `email`; empty for the body as a whole.
    pub path: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body or the parameters are not what the route takes.
    #[error("validation failed")]
    Validation(Vec<Issue>),
    /// 422: the body is well formed but names something that does not exist (a workflow).
    #[error("unprocessable")]
    Unprocessable(Vec<Issue>),
    /// 401: no valid credentials.
    #[error("unauthorized")]
    Unauthorized(&'static str),
    /// 404: nothing here, or nothing the caller may see (another user's execution is a 404).
    #[error("not found")]
    NotFound,
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 413.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 429: over a rate limit; the limiter adds `Retry-After` and `RateLimit-*`.
    #[error("too many requests")]
    TooManyRequests,
    /// 503: a dependency is down; names which, never how to reach it.
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    /// 500: logged, answered as `{"error":"internal"}`.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Wraps an unexpected error, keeping its text for the log only.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }

    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::BAD_REQUEST,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => Self::Unavailable("postgres"),
            other => Self::internal(other),
        }
    }
}

/// Every error answer: `error` is a stable code; the rest depends on it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// `validation_failed`, `unauthorized`, `not_found`, `method_not_allowed`, `payload_too_large`,
    /// `unsupported_media_type`, `rate_limited`, `unavailable` or `internal`.
    #[schema(example = "validation_failed")]
    pub error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
    /// With `validation_failed` (a 400, or a 422 when the body names something that does not
    /// exist): every problem found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issues: Option<Vec<Issue>>,
    /// With `unavailable`: which dependency (`postgres` or `redis`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependency: Option<&'static str>,
}

impl ErrorBody {
    fn code(error: &'static str) -> Self {
        Self { error, message: None, issues: None, dependency: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match self {
            Self::Validation(issues) | Self::Unprocessable(issues) => {
                ErrorBody { issues: Some(issues), ..ErrorBody::code("validation_failed") }
            }
            Self::Unauthorized(message) => ErrorBody { message: Some(message), ..ErrorBody::code("unauthorized") },
            Self::NotFound => ErrorBody::code("not_found"),
            Self::MethodNotAllowed => ErrorBody::code("method_not_allowed"),
            Self::PayloadTooLarge => ErrorBody::code("payload_too_large"),
            Self::UnsupportedMediaType => ErrorBody {
                message: Some("send `Content-Type: application/json`"),
                ..ErrorBody::code("unsupported_media_type")
            },
            Self::TooManyRequests => {
                ErrorBody { message: Some("too many requests; retry later"), ..ErrorBody::code("rate_limited") }
            }
            Self::Unavailable(dependency) => {
                ErrorBody { dependency: Some(dependency), ..ErrorBody::code("unavailable") }
            }
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                ErrorBody::code("internal")
            }
        };
        (status, Json(body)).into_response()
    }
}
