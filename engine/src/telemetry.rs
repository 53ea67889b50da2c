//! Process-wide telemetry: the Prometheus recorder behind `GET /metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Connected apps by role.
pub const CONNECTIONS: &str = "speedy_connections";
/// Frames received, by type.
pub const FRAMES_IN: &str = "speedy_frames_received_total";
/// Frames refused, by error code.
pub const FRAMES_REFUSED: &str = "speedy_frames_refused_total";
/// Connections closed by the engine, by reason.
pub const DISCONNECTS: &str = "speedy_disconnects_total";

/// Counts a frame received, by type. The counters are looked up once, not per frame,
/// from the recorder in force then (the engine installs its own before serving).
pub fn frame_received(frame: &wire::ClientMessage) {
    static BY_TYPE: std::sync::LazyLock<Vec<metrics::Counter>> = std::sync::LazyLock::new(|| {
        wire::ClientMessage::TYPES
            .iter()
            .map(|t| metrics::counter!(FRAMES_IN, "type" => *t))
            .collect()
    });
    let name = frame.type_name();
    if let Some(i) = wire::ClientMessage::TYPES.iter().position(|t| *t == name) {
        BY_TYPE[i].increment(1);
    }
}

/// The recorder's handle, installing the recorder on first use (once per process, so
/// several engines in one test process share it).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness): then ours only
            // renders what it sees, which is nothing, and the other one keeps working.
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

/// Registers the series whose labels are known up front at zero, so a fresh engine's
/// exposition already carries them.
pub fn register() {
    for role in [wire::model::Role::User, wire::model::Role::Associate] {
        metrics::gauge!(CONNECTIONS, "role" => role.as_str()).increment(0.0);
    }
    actors::telemetry::register();
}

/// Describes the engine's metrics so the exposition carries HELP and TYPE lines.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS, "Connected apps by role.");
    describe_counter!(FRAMES_IN, "Frames received from apps, by type.");
    describe_counter!(
        FRAMES_REFUSED,
        "Frames refused with an error frame, by code."
    );
    describe_counter!(DISCONNECTS, "Connections the engine closed, by reason.");
    describe_counter!(actors::telemetry::OFFERS, "Offers by how they ended.");
    describe_counter!(actors::telemetry::REQUESTS, "Requests by how they ended.");
    describe_histogram!(
        actors::telemetry::TIME_TO_ALLOT,
        metrics::Unit::Seconds,
        "Seconds from request to allotment."
    );
    describe_histogram!(
        actors::telemetry::TIME_TO_FIRST_OFFER,
        metrics::Unit::Seconds,
        "Seconds from request to first offer."
    );
    describe_gauge!(
        actors::telemetry::OPEN_REQUESTS,
        "Requests looking for an associate."
    );
    describe_gauge!(
        actors::telemetry::AVAILABLE_ASSOCIATES,
        "Available associates in every shard's index."
    );
    describe_gauge!(
        actors::telemetry::SHARD_SUPERVISORS,
        "Shard supervisors running (each stops when idle)."
    );
    describe_gauge!(
        actors::telemetry::ASSOCIATE_ACTORS,
        "Associate actors running (each stops when its app is away and idle)."
    );
    describe_gauge!(
        actors::telemetry::ORDERS_STALLED,
        "Open orders stalled in their state now."
    );
    describe_counter!(
        actors::telemetry::ORDERS_STALLED_TOTAL,
        "Order stalls by the state they happened in."
    );
    describe_gauge!(
        actors::telemetry::ORDER_ACTORS,
        "Order actors running: open orders."
    );
    describe_counter!(
        actors::telemetry::INDEX_UPDATES,
        "Position updates applied to an availability index."
    );
    describe_counter!(
        actors::telemetry::ORDER_TRANSITIONS,
        "Order transitions by the state reached."
    );
    describe_counter!(
        actors::telemetry::PAYMENTS,
        "Payment outcomes by method and status."
    );
    describe_counter!(actors::telemetry::FEEDBACK, "Feedback received by source.");
}
