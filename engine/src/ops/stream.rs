//! The ops WebSocket (`/v1/ops/ws`): for a logged-in console from an allowed origin, a
//! snapshot of the market every second. Each viewer holds one snapshot at a time; a
//! viewer that cannot take one within the write timeout is dropped, so memory never
//! grows with a slow one.
//!
//! A viewer tells the engine what its map shows with
//! `{"type":"view","south":…,"west":…,"north":…,"east":…}`; associates inside are sent one
//! by one when the view is narrow and holds few enough, else counted per H3 cell at a
//! resolution that suits its width (`resolution` in the snapshot).

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
/// Associates listed one by one at most; beyond, they are counted per cell.
const MAX_POINTS: usize = 5_000;
/// Open orders listed at most (stalled first, then the longest in their state).
const MAX_ORDERS: usize = 200;
/// A viewer's messages are small: anything longer is refused.
const MAX_VIEWER_MESSAGE: usize = 1_024;

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
    let mut view = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let frame = Message::Text(snapshot(&state, view).to_string().into());
                match tokio::time::timeout(write_timeout, tx.send(frame)).await {
                    Ok(Ok(())) => {}
                    // Gone, or too slow to take one snapshot: dropped.
                    _ => return,
                }
            }
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(Message::Text(text))) => match viewport(&text) {
                    Ok(v) => {
                        view = Some(v);
                        // The new view's snapshot now, not at the next tick.
                        tick.reset_immediately();
                    }
                    Err(message) => {
                        let error = json!({ "type": "error", "message": message });
                        let frame = Message::Text(error.to_string().into());
                        if tokio::time::timeout(write_timeout, tx.send(frame)).await.is_err() {
                            return;
                        }
                    }
                },
                Some(Ok(_)) => {}
            },
            _ = shutdown.wait() => return,
        }
    }
}

/// What a viewer's map shows, from its `view` message.
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ViewerMessage {
    View {
        south: f64,
        west: f64,
        north: f64,
        east: f64,
    },
}

/// The viewport in a viewer's message, or why it is refused.
fn viewport(text: &str) -> Result<geo::Viewport, String> {
    if text.len() > MAX_VIEWER_MESSAGE {
        return Err(format!(
            "a viewer message is at most {MAX_VIEWER_MESSAGE} bytes"
        ));
    }
    let ViewerMessage::View {
        south,
        west,
        north,
        east,
    } = serde_json::from_str(text).map_err(|e| format!("not a view message: {e}"))?;
    let corner = |lat, lng| geo::LatLng::new(lat, lng).map_err(|e| e.to_string());
    geo::Viewport::new(corner(south, west)?, corner(north, east)?).map_err(|e| e.to_string())
}

/// The market now, as seen through `view`: counters, where the associates are, open
/// requests and orders.
pub fn snapshot(state: &AppState, view: Option<geo::Viewport>) -> serde_json::Value {
    let dispatch = &state.dispatch;
    let (users, associates) = dispatch.sessions().count_by_role();
    let (shards, associate_actors) = dispatch.actor_counts();
    let market = dispatch.positions(view, MAX_POINTS);
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
        "resolution": market.resolution,
        "orders": state
            .orders
            .board()
            .orders(MAX_ORDERS)
            .iter()
            .map(|o| json!({
                "order_id": o.order_id,
                "state": o.state,
                "since_ms": o.since_ms,
                "stalled": o.stalled,
                "pickup": [o.pickup.0, o.pickup.1],
                "user_at": o.user_at.map(|(a, b)| [a, b]),
                "associate_at": o.associate_at.map(|(a, b)| [a, b]),
            }))
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

    #[test]
    fn a_viewer_says_what_its_map_shows_or_is_told_why_not() {
        let v = viewport(r#"{"type":"view","south":12.9,"west":77.5,"north":13.0,"east":77.7}"#)
            .unwrap();
        assert!(v.contains(geo::LatLng::new(12.95, 77.6).unwrap()));
        for (bad, why) in [
            (
                r#"{"type":"view","south":13.0,"west":77.5,"north":12.9,"east":77.7}"#,
                "invalid viewport",
            ),
            (
                r#"{"type":"view","south":95,"west":77.5,"north":96,"east":77.7}"#,
                "invalid coordinates",
            ),
            (r#"{"type":"zoom"}"#, "not a view message"),
            ("[]", "not a view message"),
        ] {
            let e = viewport(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(
            viewport(&" ".repeat(2_000))
                .unwrap_err()
                .contains("at most")
        );
    }
}
