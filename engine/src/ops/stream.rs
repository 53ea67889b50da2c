//! The ops WebSocket (`/v1/ops/ws`): for a logged-in console from an allowed origin, a
//! snapshot of the market every second. Each viewer holds one snapshot at a time; a
//! viewer that cannot take one within the write timeout is dropped, so memory never
//! grows with a slow one.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use crate::state::AppState;

/// How often a snapshot goes out.
const EVERY: Duration = Duration::from_secs(1);
/// Associates listed one by one at most; beyond, they are counted per shard cell.
const MAX_POINTS: usize = 5_000;

/// Upgrades a logged-in console from an allowed origin; 401 or 403 otherwise.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if state.ops.session(&headers).is_none() {
        return (StatusCode::UNAUTHORIZED, "log in at /ops first").into_response();
    }
    if !super::sessions::origin_allowed(&headers, &state.config.ops.allowed_origins) {
        return (
            StatusCode::FORBIDDEN,
            "the ops socket is only for the engine's own origin",
        )
            .into_response();
    }
    ws.on_upgrade(move |socket| stream(state, socket))
}

/// Sends a snapshot every second until the viewer leaves or falls behind.
async fn stream(state: AppState, socket: WebSocket) {
    let (mut tx, mut rx) = socket.split();
    let write_timeout = Duration::from_millis(state.config.socket.write_timeout_ms);
    let mut tick = tokio::time::interval(EVERY);
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let frame = Message::Text(snapshot(&state).to_string().into());
                match tokio::time::timeout(write_timeout, tx.send(frame)).await {
                    Ok(Ok(())) => {}
                    // Gone, or too slow to take one snapshot: dropped.
                    _ => return,
                }
            }
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = shutdown.wait() => return,
        }
    }
}

/// The market now: counters and where the associates are.
pub fn snapshot(state: &AppState) -> serde_json::Value {
    let dispatch = &state.dispatch;
    let (users, associates) = dispatch.sessions().count_by_role();
    let (shards, associate_actors) = dispatch.actor_counts();
    let market = dispatch.positions(MAX_POINTS);
    json!({
        "type": "snapshot",
        "at_ms": dispatch.now_ms(),
        "connections": { "user": users, "associate": associates },
        "open_requests": dispatch.open_requests(),
        "open_orders": state.orders.open_orders(),
        "shard_supervisors": shards,
        "associate_actors": associate_actors,
        "associates_located": market.located,
        "associates": market
            .points
            .iter()
            .map(|p| json!([p.lat, p.lng, if p.available { "available" } else { "other" }]))
            .collect::<Vec<_>>(),
        "cells": market
            .cells
            .iter()
            .map(|c| json!([c.lat, c.lng, c.count]))
            .collect::<Vec<_>>(),
    })
}
