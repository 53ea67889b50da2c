//! Domain types shared by the protocol, storage and the actors.

use serde::{Deserialize, Serialize};

use crate::ids::{AssociateId, InvoiceId, OrderId, PaymentId, RequestId, UserId};

/// Milliseconds since the Unix epoch.
pub type UnixMs = u64;

/// An amount of money in minor units of the invoice currency (paise, cents).
pub type Minor = i64;

/// A point as it travels on the wire; checked by validation before use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Point {
    /// Latitude in degrees, [-90, 90].
    pub lat: f64,
    /// Longitude in degrees, [-180, 180].
    pub lng: f64,
}

impl Point {
    /// The validated geo point.
    pub fn to_latlng(self) -> Result<geo::LatLng, geo::InvalidLatLng> {
        geo::LatLng::new(self.lat, self.lng)
    }
}

impl From<geo::LatLng> for Point {
    fn from(p: geo::LatLng) -> Self {
        Self {
            lat: p.lat(),
            lng: p.lng(),
        }
    }
}

/// Who a party is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Asks for tasks and pays.
    User,
    /// Performs tasks.
    Associate,
}

impl Role {
    /// The role's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Associate => "associate",
        }
    }
}

/// Where an associate is willing to work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Zone {
    /// Within `radius_m` metres of `centre`.
    Circle {
        /// Centre of the zone.
        centre: Point,
        /// Radius in metres.
        radius_m: u32,
    },
    /// Inside any of these H3 cells (hex strings, any resolution).
    Cells {
        /// The cells.
        cells: Vec<String>,
    },
}

/// An associate's availability as their actor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// Not taking offers.
    Offline,
    /// Online and free: may receive an offer.
    Available,
    /// Holding an offer.
    Reserved,
    /// On an order.
    Busy,
}

/// The lifecycle of an order. States only move forward; see [`OrderState::can_move_to`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Created on acceptance; the associate has not set out.
    Allotted,
    /// The associate is on the way.
    EnRoute,
    /// The associate is at the pickup point.
    Arrived,
    /// Work has started (the associate gave the user's PIN).
    Started,
    /// Work is done; billing follows.
    Completed,
    /// The invoice is issued.
    Billed,
    /// The invoice is paid.
    Paid,
    /// Finished: paid and closed, associate free.
    Closed,
    /// Cancelled before work started.
    Cancelled,
}

impl OrderState {
    /// Every state, in lifecycle order.
    pub const ALL: [OrderState; 9] = [
        OrderState::Allotted,
        OrderState::EnRoute,
        OrderState::Arrived,
        OrderState::Started,
        OrderState::Completed,
        OrderState::Billed,
        OrderState::Paid,
        OrderState::Closed,
        OrderState::Cancelled,
    ];

    /// Whether the order may move from `self` to `next`.
    ///
    /// Forward one step along allotted → en route → arrived → started → completed →
    /// billed → paid → closed; the associate may skip en route (allotted → arrived);
    /// cancellation only from allotted, en route or arrived.
    pub fn can_move_to(self, next: OrderState) -> bool {
        use OrderState::*;
        matches!(
            (self, next),
            (Allotted, EnRoute)
                | (Allotted, Arrived)
                | (EnRoute, Arrived)
                | (Arrived, Started)
                | (Started, Completed)
                | (Completed, Billed)
                | (Billed, Paid)
                | (Paid, Closed)
                | (Allotted | EnRoute | Arrived, Cancelled)
        )
    }

    /// Whether the order is finished (closed or cancelled).
    pub fn is_terminal(self) -> bool {
        matches!(self, OrderState::Closed | OrderState::Cancelled)
    }

    /// The state's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Allotted => "allotted",
            OrderState::EnRoute => "en_route",
            OrderState::Arrived => "arrived",
            OrderState::Started => "started",
            OrderState::Completed => "completed",
            OrderState::Billed => "billed",
            OrderState::Paid => "paid",
            OrderState::Closed => "closed",
            OrderState::Cancelled => "cancelled",
        }
    }
}

/// A party as the other side sees it on an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartySummary {
    /// The party's id (user or associate).
    pub id: uuid::Uuid,
    /// Display name.
    pub name: String,
    /// Contact phone, shared for the life of the order.
    pub phone: String,
    /// Average rating in hundredths (475 = 4.75), if rated.
    pub rating_centi: Option<u16>,
    /// How many ratings the average is over.
    pub rating_count: u32,
}

/// Who ended an order before it closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CancelledBy {
    /// The user.
    User,
    /// The associate.
    Associate,
    /// The operations team, through the admin API.
    Ops,
}

impl From<Role> for CancelledBy {
    fn from(role: Role) -> Self {
        match role {
            Role::User => CancelledBy::User,
            Role::Associate => CancelledBy::Associate,
        }
    }
}

/// Who cancelled an order and what it cost them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cancellation {
    /// Who cancelled.
    pub by: CancelledBy,
    /// Free text reason, if given.
    pub reason: Option<String>,
    /// Cancellation fee charged, 0 inside the free window.
    pub fee_minor: Minor,
}

/// The state of an order as both parties see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderSnapshot {
    /// The order.
    pub order_id: OrderId,
    /// The request it was allotted from.
    pub request_id: RequestId,
    /// Current state.
    pub state: OrderState,
    /// Task type name.
    pub task: String,
    /// Where the task starts.
    pub pickup: Point,
    /// The user's note on the request.
    pub note: Option<String>,
    /// The user.
    pub user: PartySummary,
    /// The associate.
    pub associate: PartySummary,
    /// The start PIN: present only in the user's copy.
    pub pin: Option<String>,
    /// Discount code given with the request.
    pub discount_code: Option<String>,
    /// When it was allotted.
    pub allotted_at_ms: UnixMs,
    /// When work started.
    pub started_at_ms: Option<UnixMs>,
    /// When work completed.
    pub completed_at_ms: Option<UnixMs>,
    /// The invoice, once billed.
    pub invoice: Option<Invoice>,
    /// Set when cancelled.
    pub cancellation: Option<Cancellation>,
}

/// What a line of an invoice is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// Base fare of the task type.
    BaseFare,
    /// Per-minute charge.
    Time,
    /// Top-up to the minimum fare.
    MinimumFareTopUp,
    /// A surcharge (night and the like).
    Surcharge,
    /// A discount (negative).
    Discount,
    /// Tax on the taxable base.
    Tax,
    /// Tip, passed to the associate in full.
    Tip,
    /// Cancellation fee.
    CancellationFee,
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineItem {
    /// What the line is for.
    pub kind: LineKind,
    /// Human-readable label.
    pub label: String,
    /// Signed amount (discounts are negative).
    pub amount_minor: Minor,
}

/// Tax-invoice data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaxLine {
    /// The taxable base.
    pub base_minor: Minor,
    /// Rate in basis points (1800 = 18 %).
    pub rate_bp: u32,
    /// Tax amount, half-up rounded.
    pub amount_minor: Minor,
}

/// How an invoice was paid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Settlement {
    /// Payment method.
    pub method: PaymentMethod,
    /// Gateway transaction reference, or the cash receipt reference.
    pub transaction_ref: String,
    /// When the payment succeeded.
    pub paid_at_ms: UnixMs,
}

/// An invoice. The line items sum to `total_minor`; `commission_minor + payout_minor +
/// tax.amount_minor == total_minor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invoice {
    /// The invoice.
    pub invoice_id: InvoiceId,
    /// The order billed.
    pub order_id: OrderId,
    /// ISO 4217 currency code.
    pub currency: String,
    /// Line items, in order.
    pub lines: Vec<LineItem>,
    /// Tax-invoice data.
    pub tax: TaxLine,
    /// What the user pays.
    pub total_minor: Minor,
    /// The platform's commission.
    pub commission_minor: Minor,
    /// What the associate receives (including any tip).
    pub payout_minor: Minor,
    /// When issued.
    pub issued_at_ms: UnixMs,
    /// Set once paid.
    pub settlement: Option<Settlement>,
}

/// How a user pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// Card through the gateway.
    Card,
    /// UPI through the gateway.
    Upi,
    /// Wallet through the gateway.
    Wallet,
    /// Cash, confirmed by the associate.
    Cash,
}

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Sent to the gateway; the outcome is not known yet.
    Pending,
    /// Captured.
    Succeeded,
    /// Declined or failed; the user may pay again with a new key.
    Failed,
}

/// The outcome of a payment attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PaymentOutcome {
    /// The payment.
    pub payment_id: PaymentId,
    /// The order paid for.
    pub order_id: OrderId,
    /// The client's idempotency key.
    pub idempotency_key: String,
    /// Where it stands.
    pub status: PaymentStatus,
    /// Amount charged (or attempted), tip included.
    pub amount_minor: Minor,
    /// Gateway reference, once known.
    pub transaction_ref: Option<String>,
    /// Why it failed, if it did.
    pub failure: Option<String>,
}

/// Why an offer ended without the associate accepting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OfferEnd {
    /// The user cancelled the request.
    Cancelled,
    /// The window passed with no answer.
    Expired,
    /// The request's own deadline passed.
    RequestExpired,
    /// The engine is shutting down.
    Shutdown,
}

/// One entry in an order's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderEvent {
    /// The order.
    pub order_id: OrderId,
    /// Position in the order's log, from 0.
    pub seq: u32,
    /// When it happened.
    pub at_ms: UnixMs,
    /// The state after the event.
    pub state: OrderState,
    /// What happened.
    pub kind: OrderEventKind,
}

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderEventKind {
    /// Created on acceptance.
    Allotted {
        /// The user.
        user_id: UserId,
        /// The associate.
        associate_id: AssociateId,
    },
    /// The associate set out.
    EnRoute,
    /// The associate arrived.
    Arrived,
    /// Work started.
    Started,
    /// Work completed.
    Completed {
        /// Billable minutes.
        minutes: u32,
    },
    /// The invoice was issued.
    Billed {
        /// The invoice.
        invoice_id: InvoiceId,
        /// Its total.
        total_minor: Minor,
    },
    /// Payment succeeded.
    Paid {
        /// The payment.
        payment_id: PaymentId,
        /// How.
        method: PaymentMethod,
        /// Amount paid.
        amount_minor: Minor,
    },
    /// Closed.
    Closed,
    /// Cancelled by a party.
    Cancelled {
        /// Who cancelled.
        by: Role,
        /// Why, if they said.
        reason: Option<String>,
        /// Fee charged.
        fee_minor: Minor,
        /// The invoice of the fee, when there is one.
        invoice_id: Option<InvoiceId>,
    },
    /// The cancellation fee of a cancelled order was paid (the state stays cancelled).
    FeePaid {
        /// The payment.
        payment_id: PaymentId,
        /// How.
        method: PaymentMethod,
        /// Amount paid.
        amount_minor: Minor,
    },
    /// Ops cancelled the order through the admin API.
    OpsCancelled {
        /// Why (recorded, shown to ops).
        reason: String,
    },
    /// Ops marked the work done through the admin API; billing follows as usual.
    OpsCompleted {
        /// Billable minutes.
        minutes: u32,
        /// Why (recorded, shown to ops).
        reason: String,
    },
    /// The order made no progress for its state's stall time (the state stays).
    Stalled {
        /// The state it is stuck in.
        state: OrderState,
        /// How long since its last event, in milliseconds.
        idle_ms: u64,
        /// What the engine did about it, if anything.
        action: Option<String>,
    },
}

impl OrderEventKind {
    /// The state an order is in after this event.
    pub fn state(&self) -> OrderState {
        match self {
            OrderEventKind::Allotted { .. } => OrderState::Allotted,
            OrderEventKind::EnRoute => OrderState::EnRoute,
            OrderEventKind::Arrived => OrderState::Arrived,
            OrderEventKind::Started => OrderState::Started,
            OrderEventKind::Completed { .. } => OrderState::Completed,
            OrderEventKind::Billed { .. } => OrderState::Billed,
            OrderEventKind::Paid { .. } => OrderState::Paid,
            OrderEventKind::Closed => OrderState::Closed,
            OrderEventKind::Cancelled { .. } => OrderState::Cancelled,
            OrderEventKind::FeePaid { .. } => OrderState::Cancelled,
            OrderEventKind::OpsCancelled { .. } => OrderState::Cancelled,
            OrderEventKind::OpsCompleted { .. } => OrderState::Completed,
            OrderEventKind::Stalled { state, .. } => *state,
        }
    }

    /// Whether this event may happen to an order in state `from`: the lifecycle's next
    /// steps, plus what only ops may do (cancel any open order) and paying the fee of a
    /// cancelled order. The order's other fields are checked by the store.
    pub fn allowed_from(&self, from: OrderState) -> bool {
        match self {
            OrderEventKind::FeePaid { .. } => from == OrderState::Cancelled,
            OrderEventKind::OpsCancelled { .. } => !from.is_terminal(),
            // A cancelled order still open owes its fee, and may stall too.
            OrderEventKind::Stalled { state, .. } => from == *state,
            other => from.can_move_to(other.state()),
        }
    }
}

/// Prices for one task type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskPricing {
    /// Task type name.
    pub task: String,
    /// Charged on every order.
    pub base_minor: Minor,
    /// Charged per started minute of work.
    pub per_minute_minor: Minor,
    /// The fare (base + time + surcharges) is topped up to at least this.
    pub minimum_minor: Minor,
}

/// A surcharge for work that starts inside a daily local-time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NightSurcharge {
    /// Window start, minutes after local midnight.
    pub start_minute: u16,
    /// Window end, minutes after local midnight (may be before the start: wraps).
    pub end_minute: u16,
    /// Surcharge on base + time, in basis points.
    pub rate_bp: u32,
}

/// The cancellation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancellationPolicy {
    /// Cancelling within this many minutes of allotment is free.
    pub free_minutes: u32,
    /// The fee after the free window.
    pub fee_minor: Minor,
}

/// Every setting the pricing engine uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PricingSettings {
    /// ISO 4217 currency of every amount.
    pub currency: String,
    /// Local time offset from UTC in minutes, for the night window.
    pub utc_offset_minutes: i16,
    /// Per-task-type prices.
    pub tasks: Vec<TaskPricing>,
    /// Night surcharge, if any.
    pub night: Option<NightSurcharge>,
    /// Platform commission on the taxable base, in basis points.
    pub commission_bp: u32,
    /// Tax on the taxable base, in basis points.
    pub tax_bp: u32,
    /// Cancellation policy.
    pub cancellation: CancellationPolicy,
}

/// What a discount code takes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DiscountKind {
    /// A percentage of the fare, in basis points, capped.
    Percent {
        /// Percentage in basis points (1000 = 10 %).
        rate_bp: u32,
        /// Largest discount.
        cap_minor: Minor,
    },
    /// A fixed amount.
    Flat {
        /// The amount.
        amount_minor: Minor,
    },
}

/// A discount code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiscountCode {
    /// The code users type (case-sensitive).
    pub code: String,
    /// What it takes off.
    pub kind: DiscountKind,
    /// No longer valid from this time, if set.
    pub expires_at_ms: Option<UnixMs>,
    /// Applies only to fares of at least this.
    pub min_order_minor: Minor,
    /// Each user may use it once.
    pub once_per_user: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_only_moves_forward() {
        use OrderState::*;
        let path = [
            Allotted, EnRoute, Arrived, Started, Completed, Billed, Paid, Closed,
        ];
        for w in path.windows(2) {
            assert!(w[0].can_move_to(w[1]), "{:?} -> {:?}", w[0], w[1]);
            assert!(!w[1].can_move_to(w[0]), "{:?} -> {:?}", w[1], w[0]);
        }
        for s in OrderState::ALL {
            assert!(!s.can_move_to(s), "{s:?} to itself");
            assert!(!Closed.can_move_to(s));
            assert!(!Cancelled.can_move_to(s));
        }
        assert!(Arrived.can_move_to(Cancelled));
        assert!(!Started.can_move_to(Cancelled));
        assert!(!Allotted.can_move_to(Started));
    }
}
