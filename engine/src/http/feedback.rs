//! Feedback gathered elsewhere (social media), posted by an integration with the
//! feedback API key.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use wire::OrderId;
use wire::model::{OrderState, Role};

use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{Body, FeedbackKey};
use crate::http::profiles::short;
use crate::state::AppState;

/// Feedback gathered elsewhere about a party of a closed order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalFeedback {
    /// The order, which must be closed.
    pub order_id: OrderId,
    /// Who is rated.
    pub about: Role,
    /// 1 to 5.
    #[schema(minimum = 1, maximum = 5)]
    pub rating: u8,
    /// Up to the engine's comment limit (500 characters by default).
    #[serde(default)]
    pub comment: Option<String>,
    /// Where it came from (`twitter`, `instagram`), 1–64 characters.
    pub source: String,
}

/// Records feedback from elsewhere: 201 with the rating the first time, 200 with the
/// rating already on record when the same source rated the same party of the same order
/// before (never counted twice). The key is checked before the body is read.
#[utoipa::path(
    post,
    path = "/v1/feedback",
    tag = "feedback",
    security(("feedback_key" = [])),
    request_body = ExternalFeedback,
    responses(
        (status = 201, description = "Recorded", body = storage::FeedbackRecord),
        (status = 200, description = "Already recorded from this source: the rating on record", body = storage::FeedbackRecord),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or wrong feedback API key", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "The order is not closed yet", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid", body = ErrorBody)
    )
)]
pub async fn post_feedback(
    State(state): State<AppState>,
    _key: FeedbackKey,
    Body(body): Body<ExternalFeedback>,
) -> ApiResult<(StatusCode, Json<storage::FeedbackRecord>)> {
    if !(1..=5).contains(&body.rating) {
        return Err(ApiError::bad("rating: must be 1 to 5"));
    }
    if body.source.trim().is_empty() {
        return Err(ApiError::bad("source: required"));
    }
    short("source", &body.source, 64)?;
    if let Some(c) = &body.comment {
        short("comment", c, state.validator.limits.max_comment_chars)?;
    }
    let order = state
        .store
        .order(body.order_id)?
        .ok_or_else(|| ApiError::not_found("order"))?;
    if order.state != OrderState::Closed {
        return Err(ApiError::conflict("feedback opens when the order closes"));
    }
    let outcome = state
        .orders
        .external_feedback(actors::orders::messages::External {
            order_id: body.order_id,
            about: body.about,
            rating: body.rating,
            comment: body.comment,
            source: body.source,
        })
        .await?;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(outcome.record)))
}
