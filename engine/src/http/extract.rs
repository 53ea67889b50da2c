//! Request extractors: keys checked from the headers before the body is read, and
//! bodies, path and query parameters whose every rejection is an [`ApiError`] in the
//! one error shape.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use wire::ErrorCode;

use crate::auth::keys_match;
use crate::http::error::ApiError;
use crate::state::AppState;

/// The caller gave the admin key in `x-admin-key`.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

/// The caller gave the feedback API key in `x-api-key`.
#[derive(Debug, Clone, Copy)]
pub struct FeedbackKey;

/// The value of header `name`, or empty.
fn header<'a>(parts: &'a Parts, name: &str) -> &'a str {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if is_admin(&parts.headers, state) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized("admin key required in x-admin-key"))
        }
    }
}

/// Whether the headers carry the admin key.
pub fn is_admin(headers: &HeaderMap, state: &AppState) -> bool {
    let given = headers
        .get("x-admin-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    keys_match(given, &state.secrets.admin_key)
}

impl FromRequestParts<AppState> for FeedbackKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if keys_match(header(parts, "x-api-key"), &state.secrets.feedback_api_key) {
            Ok(FeedbackKey)
        } else {
            Err(ApiError::unauthorized(
                "feedback API key required in x-api-key",
            ))
        }
    }
}

/// A JSON body: malformed JSON is 400 `bad_json`, a wrong content type 415
/// `bad_json`, fields of the wrong shape 422 (`missing_field` or `bad_field`).
#[derive(Debug, Clone)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// The API error for a JSON body axum could not take.
fn json_rejection(rejection: JsonRejection) -> ApiError {
    let detail = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => {
            let code = if detail.contains("missing field") {
                ErrorCode::MissingField
            } else {
                ErrorCode::BadField
            };
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadJson,
            "send the body as JSON with content-type: application/json",
        ),
        JsonRejection::BytesRejection(_) => {
            ApiError::new(rejection_status(&detail), ErrorCode::BadJson, detail)
        }
        _ => ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadJson, detail),
    }
}

fn rejection_status(detail: &str) -> StatusCode {
    if detail.contains("length limit") {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// Path parameters: a malformed one (an id that is not a UUID) is 422 `bad_field`.
#[derive(Debug, Clone)]
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(PathParams(value)),
            Err(rejection @ PathRejection::FailedToDeserializePathParams(_)) => {
                Err(ApiError::bad(rejection.body_text()))
            }
            Err(rejection) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                rejection.body_text(),
            )),
        }
    }
}

/// Query parameters: one of the wrong type or out of range is 422 `bad_field`.
#[derive(Debug, Clone)]
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(QueryParams(value)),
            Err(rejection @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(ApiError::bad(rejection.body_text()))
            }
            Err(rejection) => Err(ApiError::bad(rejection.body_text())),
        }
    }
}
