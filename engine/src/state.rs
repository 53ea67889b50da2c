//! What every request handler and session shares.

use std::sync::Arc;

use actors::{Dispatch, Orders};
use metrics_exporter_prometheus::PrometheusHandle;
use wire::Validator;

use crate::auth::{Secrets, Tokens};
use crate::config::Config;
use crate::shutdown::Shutdown;

/// Shared engine state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Settings.
    pub config: Arc<Config>,
    /// The database.
    pub store: storage::Store,
    /// Dispatch.
    pub dispatch: Dispatch,
    /// Orders, billing, payments, feedback.
    pub orders: Orders,
    /// Token issuing and checking.
    pub tokens: Tokens,
    /// Admin and API keys.
    pub secrets: Arc<Secrets>,
    /// Frame validation.
    pub validator: Arc<Validator>,
    /// Metrics exposition.
    pub metrics: PrometheusHandle,
    /// The stop signal.
    pub shutdown: Shutdown,
    /// Live WebSocket sessions, which shutdown waits for.
    pub live_sessions: crate::shutdown::Sessions,
    /// The OpenAPI document, as served.
    pub openapi: Arc<String>,
    /// Cluster mode: the JetStream log of order events.
    pub events: Option<cluster::EventLog>,
    /// Cluster mode: whether this node holds its lease now.
    pub lease: Option<tokio::sync::watch::Receiver<bool>>,
    /// Ops console sessions.
    pub ops: crate::ops::OpsSessions,
}
