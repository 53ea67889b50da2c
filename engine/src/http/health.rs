//! Health, metrics and the API's own description.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// Whether the engine serves, and how busy it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `stopping` during a graceful shutdown.
    pub status: String,
    /// Requests looking for an associate.
    pub open_requests: u64,
    /// Orders not yet closed (or owing a cancellation fee).
    pub open_orders: u64,
    /// Connected apps.
    pub connections: u64,
}

/// Health: always 200 while the engine runs; `status` says whether it is stopping.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    security(()),
    responses((status = 200, description = "The engine runs", body = Health))
)]
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let status = if state.shutdown.is_stopping() {
        "stopping"
    } else {
        "ok"
    };
    Json(Health {
        status: status.into(),
        open_requests: state.dispatch.open_requests() as u64,
        open_orders: state.orders.open_orders() as u64,
        connections: state.dispatch.sessions().len() as u64,
    })
}

/// Whether this node should be sent traffic, and if not, why.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, or `not_ready`.
    pub status: String,
    /// What is missing, when not ready: `stopping`, `store unreachable: …`, `no lease`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// How long the store may take to answer the readiness read.
const STORE_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness: 200 when the node is not stopping, its store answers, and (cluster mode)
/// it holds its lease, having caught up on cell ownership; 503 with the reasons otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    security(()),
    responses(
        (status = 200, description = "Ready for traffic", body = Readiness),
        (status = 503, description = "Not ready, with the reasons", body = Readiness)
    )
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut reasons = Vec::new();
    if state.shutdown.is_stopping() {
        reasons.push("stopping".to_string());
    }
    match tokio::time::timeout(STORE_CHECK, state.store.reachable()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => reasons.push(format!("store unreachable: {e}")),
        Err(_) => reasons.push(format!(
            "store unreachable: no answer within {} s",
            STORE_CHECK.as_secs()
        )),
    }
    if let Some(lease) = &state.lease
        && !*lease.borrow()
    {
        reasons.push("no lease: this node is not in the cluster's live set".to_string());
    }
    let code = if reasons.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if reasons.is_empty() {
        "ready"
    } else {
        "not_ready"
    };
    (
        code,
        Json(Readiness {
            status: status.into(),
            reasons,
        }),
    )
}

/// Prometheus metrics (`speedy_*`), in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// This API's OpenAPI 3.1 document (the same as docs/openapi.json).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "ops",
    security(()),
    responses((status = 200, description = "The OpenAPI document", body = Object))
)]
pub async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_owned(),
    )
}
