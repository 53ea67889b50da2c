//! A request's offer trail over HTTP: every offer it made, with when each was shown and
//! when it ended on the engine's clock (for ops, and for checks that no request was ever
//! offered to two associates at once).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use wire::model::UnixMs;
use wire::{AssociateId, RequestId};

use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{Admin, PathParams};
use crate::state::AppState;

/// A request and the offers it made.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestOffers {
    /// The request.
    pub request_id: RequestId,
    /// Its task type.
    pub task: String,
    /// When it was made.
    pub created_at_ms: UnixMs,
    /// How it ended (allotted, cancelled, no_associate, failed, handed_over); absent
    /// while it is open.
    pub outcome: Option<String>,
    /// When it ended on this node.
    pub ended_at_ms: Option<UnixMs>,
    /// Its offers, oldest first (the 32 newest of a longer chain).
    pub offers: Vec<OfferSpan>,
}

/// One offer: shown to an associate until it ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct OfferSpan {
    /// To whom.
    pub associate_id: AssociateId,
    /// When the associate was shown it.
    pub shown_at_ms: UnixMs,
    /// When its window ends.
    pub expires_at_ms: UnixMs,
    /// When the associate's hold on it ended; absent while it is open.
    pub ended_at_ms: Option<UnixMs>,
    /// `open`, or how it ended: accepted, declined, expired, withdrawn, disconnected,
    /// failed.
    pub outcome: String,
}

impl From<actors::RequestTrail> for RequestOffers {
    fn from(t: actors::RequestTrail) -> Self {
        Self {
            request_id: t.request_id,
            task: t.task,
            created_at_ms: t.created_at_ms,
            outcome: t.outcome.map(str::to_owned),
            ended_at_ms: t.ended_at_ms,
            offers: t
                .offers
                .into_iter()
                .map(|o| OfferSpan {
                    associate_id: o.associate,
                    shown_at_ms: o.at_ms,
                    expires_at_ms: o.expires_at_ms,
                    ended_at_ms: o.ended_at_ms,
                    outcome: o.outcome.to_owned(),
                })
                .collect(),
        }
    }
}

/// The offers of a request whose offer loop runs on this node or ended here recently
/// (the last 65 536); an order's request is its `request_id`.
#[utoipa::path(
    get,
    path = "/v1/requests/{id}/offers",
    tag = "orders",
    security(("admin_key" = [])),
    params(("id" = uuid::Uuid, Path, description = "The request")),
    responses(
        (status = 200, description = "The request's offers", body = RequestOffers),
        (status = 401, description = "No or wrong admin key", body = ErrorBody),
        (status = 404, description = "No such request on this node (or ended too long ago)", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody)
    )
)]
pub async fn request_offers(
    State(state): State<AppState>,
    _: Admin,
    PathParams(id): PathParams<RequestId>,
) -> ApiResult<Json<RequestOffers>> {
    state
        .dispatch
        .trail(id)
        .map(|t| Json(t.into()))
        .ok_or_else(|| ApiError::not_found("request"))
}
