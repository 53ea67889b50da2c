//! What the console does besides watching: look an order up (its events as a timeline),
//! cancel or complete it by hand with a reason, take an associate offline. Reads need the
//! session; every change needs the session, the engine's own origin and the session's
//! CSRF token in `x-csrf-token`.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use serde::Deserialize;
use wire::{AssociateId, OrderId};

use crate::auth::keys_match;
use crate::http::ApiError;
use crate::http::error::ApiResult;
use crate::http::extract::PathParams;
use crate::http::orders::{OrderView, ops_end, order_view};
use crate::state::AppState;

/// A logged-in console.
pub struct OpsRead;

/// A logged-in console from an allowed origin, with the session's CSRF token.
pub struct OpsWrite;

impl FromRequestParts<AppState> for OpsRead {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state
            .ops
            .session(&parts.headers)
            .map(|_| OpsRead)
            .ok_or_else(|| ApiError::unauthorized("log in at /ops first"))
    }
}

impl FromRequestParts<AppState> for OpsWrite {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let session = state
            .ops
            .session(&parts.headers)
            .ok_or_else(|| ApiError::unauthorized("log in at /ops first"))?;
        let token = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !super::sessions::origin_allowed(&parts.headers, &state.config.ops.allowed_origins)
            || !keys_match(token, &session.csrf)
        {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                wire::ErrorCode::Unauthorized,
                "refused: not from the console (origin or CSRF token)",
            ));
        }
        Ok(OpsWrite)
    }
}

/// An order with its events, for the console.
pub async fn order(
    State(state): State<AppState>,
    _: OpsRead,
    PathParams(id): PathParams<OrderId>,
) -> ApiResult<Json<OrderView>> {
    let order = state
        .store
        .order(id)?
        .ok_or_else(|| ApiError::not_found("order"))?;
    Ok(Json(order_view(&state, id, Some(order))?))
}

/// An order's track for replay: both parties' positions while it moved, oldest first,
/// as `[at_ms, lat, lng, "user" | "associate"]`; 404 when this node keeps none (tracks
/// live in memory, for open orders and the last finished ones run here).
pub async fn track(
    State(state): State<AppState>,
    _: OpsRead,
    PathParams(id): PathParams<OrderId>,
) -> ApiResult<Json<serde_json::Value>> {
    let track = state
        .orders
        .board()
        .track(id)
        .ok_or_else(|| ApiError::not_found("order track"))?;
    let points: Vec<_> = track
        .points()
        .iter()
        .map(|p| serde_json::json!([p.at_ms, p.lat, p.lng, p.side]))
        .collect();
    Ok(Json(
        serde_json::json!({ "order_id": id, "points": points }),
    ))
}

/// Why ops act on an order.
#[derive(Debug, Deserialize)]
pub struct Reason {
    reason: String,
}

/// Cancels an order (`cancel`) or completes its started work (`complete`) by hand.
pub async fn end_order(
    State(state): State<AppState>,
    _: OpsWrite,
    PathParams((id, action)): PathParams<(OrderId, String)>,
    Json(body): Json<Reason>,
) -> ApiResult<Json<OrderView>> {
    let action = match action.as_str() {
        "cancel" => actors::orders::messages::OpsAction::Cancel,
        "complete" => actors::orders::messages::OpsAction::Complete,
        _ => return Err(ApiError::not_found("console action")),
    };
    ops_end(state, id, action, body.reason).await
}

/// Takes an associate offline (they stop getting offers; an open offer stays until
/// answered or withdrawn).
pub async fn associate_offline(
    State(state): State<AppState>,
    _: OpsWrite,
    PathParams(id): PathParams<AssociateId>,
) -> ApiResult<Json<serde_json::Value>> {
    let view = state.dispatch.go_offline(id).await?;
    Ok(Json(serde_json::json!({
        "associate_id": id,
        "availability": view.availability,
    })))
}
