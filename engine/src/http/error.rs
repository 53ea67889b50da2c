//! The one error shape of the HTTP API: `{"error": {"code", "message"}}` with a stable
//! code, for every failure, extractor rejections included.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use wire::ErrorCode;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A stable code and a message for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable.
    pub code: ErrorCode,
    /// What exactly was wrong, naming the field where there is one.
    pub message: String,
}

/// An HTTP error: status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

/// What a handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// A field with an impossible value: 422 `bad_field`.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::invalid(ErrorCode::BadField, message)
    }

    /// A well-formed request whose content is refused, with `code`: 422.
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// No such `what`: 404 `not_found`.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{what} not found"),
        )
    }

    /// Missing or wrong credentials: 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    /// A state that forbids the request: 409 `invalid_state`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::InvalidState, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<storage::StorageError> for ApiError {
    fn from(e: storage::StorageError) -> Self {
        tracing::error!(error = %e, "storage error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            e.to_string(),
        )
    }
}

impl From<actors::ActorError> for ApiError {
    fn from(e: actors::ActorError) -> Self {
        let status = match e.code() {
            ErrorCode::NotYourOrder => StatusCode::NOT_FOUND,
            ErrorCode::AlreadyRated
            | ErrorCode::InvalidState
            | ErrorCode::AlreadyActive
            | ErrorCode::PaymentPending => StatusCode::CONFLICT,
            ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

/// Any route the API does not have: 404, as JSON.
pub async fn no_route() -> ApiError {
    ApiError::not_found("route")
}

/// A route the API has, asked with a method it does not take: 405, as JSON.
pub async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::BadField,
        "this route does not take that method",
    )
}
