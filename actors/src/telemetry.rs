//! Metric names (Prometheus, `speedy_*`) and the helpers that record them.

/// Offers by how they ended: sent, accepted, declined, expired, withdrawn, disconnected.
pub const OFFERS: &str = "speedy_offers_total";
/// Requests by how they ended: allotted, cancelled, no_associate, failed.
pub const REQUESTS: &str = "speedy_requests_total";
/// Seconds from request to allotment.
pub const TIME_TO_ALLOT: &str = "speedy_time_to_allot_seconds";
/// Seconds from request to first offer.
pub const TIME_TO_FIRST_OFFER: &str = "speedy_time_to_first_offer_seconds";
/// Requests still looking for an associate.
pub const OPEN_REQUESTS: &str = "speedy_open_requests";
/// Position updates applied to an availability index (the end of location ingest).
pub const INDEX_UPDATES: &str = "speedy_index_updates_total";
/// Available associates in every shard's index.
pub const AVAILABLE_ASSOCIATES: &str = "speedy_available_associates";
/// Shard supervisors running (each stops when idle).
pub const SHARD_SUPERVISORS: &str = "speedy_shard_supervisors";
/// Associate actors running (each stops when its app is away and idle).
pub const ASSOCIATE_ACTORS: &str = "speedy_associate_actors";
/// Open orders stalled in their state now.
pub const ORDERS_STALLED: &str = "speedy_orders_stalled";
/// Stalls by the state they happened in.
pub const ORDERS_STALLED_TOTAL: &str = "speedy_orders_stalled_total";
/// Order actors running (open orders).
pub const ORDER_ACTORS: &str = "speedy_order_actors";
/// Orders by the state they reached.
pub const ORDER_TRANSITIONS: &str = "speedy_order_transitions_total";
/// Payments by method and outcome.
pub const PAYMENTS: &str = "speedy_payments_total";
/// Feedback received by source.
pub const FEEDBACK: &str = "speedy_feedback_total";
/// Frames waiting in a connection's outbound queue, seen as each is queued.
pub const OUTBOX_DEPTH: &str = "speedy_session_outbox_depth";
/// Cluster mode: shard cells this node holds now.
pub const CLUSTER_CELLS: &str = "speedy_cluster_cells";
/// Cluster mode: messages waiting in the node's ordered queue to NATS.
pub const CLUSTER_QUEUE: &str = "speedy_cluster_queue";
/// Cluster mode: cells gained and lost, by `change`.
pub const CLUSTER_CELL_CHANGES: &str = "speedy_cluster_cell_changes_total";
/// Cluster mode: order views a (re)connecting app was sent from the store because no
/// node could answer for the order at that moment (its cell was changing owner).
pub const ORDER_VIEWS_FROM_STORE: &str = "speedy_cluster_order_views_from_store_total";
/// Messages waiting in an actor's mailbox, seen as each is handled, by actor.
pub const MAILBOX_DEPTH: &str = "speedy_mailbox_depth";

/// How an offer can end, as the `outcome` label of [`OFFERS`].
pub const OFFER_OUTCOMES: [&str; 6] = [
    "sent",
    "accepted",
    "declined",
    "expired",
    "withdrawn",
    "disconnected",
];
/// How a request can end, as the `outcome` label of [`REQUESTS`].
pub const REQUEST_OUTCOMES: [&str; 4] = ["allotted", "cancelled", "no_associate", "failed"];

/// Registers the dispatch series at zero, so they are scraped (and alerts can see them)
/// before the first event.
pub fn register() {
    for outcome in OFFER_OUTCOMES {
        metrics::counter!(OFFERS, "outcome" => outcome).increment(0);
    }
    for outcome in REQUEST_OUTCOMES {
        metrics::counter!(REQUESTS, "outcome" => outcome).increment(0);
    }
    metrics::gauge!(OPEN_REQUESTS).increment(0.0);
    metrics::gauge!(AVAILABLE_ASSOCIATES).increment(0.0);
    metrics::gauge!(SHARD_SUPERVISORS).increment(0.0);
    metrics::gauge!(ASSOCIATE_ACTORS).increment(0.0);
    metrics::gauge!(ORDER_ACTORS).increment(0.0);
    metrics::gauge!(ORDERS_STALLED).increment(0.0);
    metrics::counter!(INDEX_UPDATES).increment(0);
    // Zero on a single node, which holds no cells and sends nothing to NATS.
    metrics::gauge!(CLUSTER_CELLS).increment(0.0);
    metrics::gauge!(CLUSTER_QUEUE).increment(0.0);
}

/// Counts an offer event (`sent`, `accepted`, `declined`, `expired`, `withdrawn`,
/// `disconnected`).
pub fn offer(outcome: &'static str) {
    metrics::counter!(OFFERS, "outcome" => outcome).increment(1);
}

/// The index-update counter and the availability gauge, looked up once (they are
/// touched on every position update). They bind to the recorder in force at the first
/// update: the engine installs its global one at start, before any frame.
static INDEX: std::sync::LazyLock<(metrics::Counter, metrics::Gauge)> =
    std::sync::LazyLock::new(|| {
        (
            metrics::counter!(INDEX_UPDATES),
            metrics::gauge!(AVAILABLE_ASSOCIATES),
        )
    });

/// Counts a position applied to an index (`joined`: a new entry in it).
pub fn index_updated(joined: bool) {
    INDEX.0.increment(1);
    if joined {
        INDEX.1.increment(1.0);
    }
}

/// Counts an associate taken out of an index.
pub fn index_left() {
    INDEX.1.decrement(1.0);
}

/// Counts a finished request (`allotted`, `cancelled`, `no_associate`, `failed`).
pub fn request_ended(outcome: &'static str) {
    metrics::counter!(REQUESTS, "outcome" => outcome).increment(1);
    metrics::gauge!(OPEN_REQUESTS).decrement(1.0);
}

/// Counts a new request.
pub fn request_opened() {
    metrics::gauge!(OPEN_REQUESTS).increment(1.0);
}

/// Counts order transitions by state: a subscriber of the event bus, like billing and
/// feedback.
pub(crate) fn count_transitions(mut events: crate::orders::bus::Subscription) {
    actix_rt::spawn(async move {
        while let Some((_, event)) = events.next().await {
            // A stall is an alert about a state, not a move to one.
            if !matches!(event.kind, wire::model::OrderEventKind::Stalled { .. }) {
                metrics::counter!(ORDER_TRANSITIONS, "state" => event.state.as_str()).increment(1);
            }
        }
    });
}

/// Records the depth of a connection's outbound queue with one frame just queued.
pub(crate) fn outbox_depth(depth: usize) {
    static DEPTH: std::sync::LazyLock<metrics::Histogram> =
        std::sync::LazyLock::new(|| metrics::histogram!(OUTBOX_DEPTH));
    DEPTH.record(depth as f64);
}
