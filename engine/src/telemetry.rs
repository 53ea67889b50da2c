//! Process-wide telemetry: the Prometheus recorder behind `GET /metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Connected apps by role.
pub const CONNECTIONS: &str = "speedy_connections";
/// Frames received, by type.
pub const FRAMES_IN: &str = "speedy_frames_received_total";
/// Frames refused, by error code.
pub const FRAMES_REFUSED: &str = "speedy_frames_refused_total";
/// Connections closed by the engine, by reason.
pub const DISCONNECTS: &str = "speedy_disconnects_total";
/// Seconds from a frame's arrival to the end of what it asked for, by type.
pub const FRAME_SECONDS: &str = "speedy_frame_handling_seconds";

/// Bucket bounds of every `*_seconds` histogram: 100 µs to 5 min.
pub const SECONDS_BUCKETS: [f64; 20] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Bucket bounds of every `*_depth` histogram (queue lengths).
pub const DEPTH_BUCKETS: [f64; 14] = [
    0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0,
];
/// How often histograms are folded into their buckets, scraped or not (their samples
/// are kept until then).
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Per-type series of frames, looked up once (not per frame) from the recorder in
/// force then: the engine installs its own before serving.
struct ByType {
    received: Vec<metrics::Counter>,
    handled: Vec<metrics::Histogram>,
}

static BY_TYPE: std::sync::LazyLock<ByType> = std::sync::LazyLock::new(|| ByType {
    received: wire::ClientMessage::TYPES
        .iter()
        .map(|t| metrics::counter!(FRAMES_IN, "type" => *t))
        .collect(),
    handled: wire::ClientMessage::TYPES
        .iter()
        .map(|t| metrics::histogram!(FRAME_SECONDS, "type" => *t))
        .collect(),
});

fn type_index(name: &str) -> Option<usize> {
    wire::ClientMessage::TYPES.iter().position(|t| *t == name)
}

/// Counts a frame received, by type.
pub fn frame_received(frame: &wire::ClientMessage) {
    if let Some(i) = type_index(frame.type_name()) {
        BY_TYPE.received[i].increment(1);
    }
}

/// Records how long a frame of type `name` took, from arrival to done.
pub fn frame_handled(name: &str, took: std::time::Duration) {
    if let Some(i) = type_index(name) {
        BY_TYPE.handled[i].record(took.as_secs_f64());
    }
}

/// The recorder's handle, installing the recorder on first use (once per process, so
/// several engines in one test process share it).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_depth".into()), &DEPTH_BUCKETS)
                })
                // expect: the bucket lists above are constant and not empty.
                .expect("bucket bounds");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            let upkeep = handle.clone();
            // Without it, samples of a histogram nobody scrapes would pile up.
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "no metrics upkeep thread: histograms fold only when scraped");
            }
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
    describe_histogram!(
        FRAME_SECONDS,
        metrics::Unit::Seconds,
        "Seconds from a frame's arrival to the end of what it asked for, by type."
    );
    describe_histogram!(
        storage::DURABLE_WRITE_SECONDS,
        metrics::Unit::Seconds,
        "Seconds from a write's submission to its acknowledgement after fdatasync."
    );
    describe_histogram!(
        actors::telemetry::OUTBOX_DEPTH,
        metrics::Unit::Count,
        "Frames waiting in a connection's outbound queue, seen as each is queued."
    );
    describe_histogram!(
        actors::telemetry::MAILBOX_DEPTH,
        metrics::Unit::Count,
        "Messages waiting in an actor's mailbox, seen as each is handled, by actor."
    );
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
        actors::telemetry::CLUSTER_CELLS,
        "Cluster mode: shard cells this node holds now."
    );
    describe_gauge!(
        actors::telemetry::CLUSTER_QUEUE,
        "Cluster mode: messages waiting in the node's ordered queue to NATS."
    );
    describe_counter!(
        actors::telemetry::CLUSTER_CELL_CHANGES,
        "Cluster mode: shard cells gained and lost, by change."
    );
    describe_counter!(
        actors::telemetry::ORDER_VIEWS_FROM_STORE,
        "Cluster mode: order views sent to a (re)connecting app from the store while no node could answer for the order."
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
