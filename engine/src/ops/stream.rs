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
/// Open requests listed at most (the oldest).
const MAX_REQUESTS: usize = 200;
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
    let exposition = state.metrics.render();
    json!({
        "type": "snapshot",
        "totals": totals(&exposition),
        "first_offer_buckets": buckets(&exposition, "speedy_time_to_first_offer_seconds_bucket"),
        "first_offer_count": sum_of(&exposition, "speedy_time_to_first_offer_seconds_count", None),
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
            .map(|p| json!([p.lat, p.lng, p.availability]))
            .collect::<Vec<_>>(),
        "cells": market
            .cells
            .iter()
            .map(|c| json!([c.lat, c.lng, c.count]))
            .collect::<Vec<_>>(),
        "requests": dispatch
            .trails(MAX_REQUESTS)
            .iter()
            .map(|t| json!({
                "request_id": t.request_id,
                "task": t.task,
                "at": [t.lat, t.lng],
                "created_at_ms": t.created_at_ms,
                "offers": t.offers.iter().map(|o| json!([o.associate, o.at_ms, o.outcome])).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>(),
        "available_per_cell": market
            .available
            .iter()
            .map(|c| json!([c.lat, c.lng, c.count]))
            .collect::<Vec<_>>(),
    })
}

/// The value of every sample of `name` in `exposition`, summed over its labels (and those
/// whose labels contain `filter`, if given).
fn sum_of(exposition: &str, name: &str, filter: Option<&str>) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| filter.is_none_or(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Running totals the console turns into rates: frames in, requests ended, allotments.
fn totals(exposition: &str) -> serde_json::Value {
    json!({
        "frames": sum_of(exposition, crate::telemetry::FRAMES_IN, None),
        "requests_ended": sum_of(exposition, actors::telemetry::REQUESTS, None),
        "allotted": sum_of(exposition, actors::telemetry::REQUESTS, Some("outcome=\"allotted\"")),
    })
}

/// A histogram's cumulative buckets as `[upper bound, count]`, from its `_bucket` series.
fn buckets(exposition: &str, series: &str) -> Vec<(f64, f64)> {
    exposition
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((bound, count))
        })
        .filter(|(bound, _)| bound.is_finite())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_buckets_are_read_from_the_exposition() {
        let text = "# HELP x\n\
            speedy_frames_received_total{type=\"location\"} 10\n\
            speedy_frames_received_total{type=\"request\"} 2\n\
            speedy_requests_total{outcome=\"allotted\"} 3\n\
            speedy_requests_total{outcome=\"cancelled\"} 1\n\
            speedy_time_to_first_offer_seconds_bucket{le=\"0.01\"} 4\n\
            speedy_time_to_first_offer_seconds_bucket{le=\"+Inf\"} 5\n";
        assert_eq!(
            totals(text),
            json!({ "frames": 12.0, "requests_ended": 4.0, "allotted": 3.0 })
        );
        assert_eq!(
            buckets(text, "speedy_time_to_first_offer_seconds_bucket"),
            [(0.01, 4.0)]
        );
    }
}
