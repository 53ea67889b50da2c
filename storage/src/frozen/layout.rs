//! The on-disk layout of every stored record: storage's own types, encoded with bincode
//! 2 (standard configuration) through serde. They mirror the public records and the
//! wire model field for field, but they are frozen: a change to the protocol changes
//! only the conversions in `convert.rs` (which the compiler forces to stay exhaustive),
//! never what is on disk.
//!
//! The same types are the JSON bodies of the Postgres backend's rows, so there too the
//! protocol cannot change what is stored. Their serde names (fields, and enum variants:
//! snake_case but for `FeedbackSource`) are part of that format; bincode does not see them.
//!
//! Rules: a type is never edited in place. A new enum variant may be appended (old
//! data never holds it); anything else (a field added, removed, reordered or retyped)
//! is a new type, a new schema version and a migration in `migrate.rs`. Each type says
//! the schema version it first appeared in.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A point (schema 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Point {
    pub lat: f64,
    pub lng: f64,
}

/// A party's role (schema 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    User,
    Associate,
}

/// An associate's service zone (schema 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Zone {
    Circle { centre: Point, radius_m: u32 },
    Cells { cells: Vec<String> },
}

/// An order's lifecycle state (schema 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OrderState {
    Allotted,
    EnRoute,
    Arrived,
    Started,
    Completed,
    Billed,
    Paid,
    Closed,
    Cancelled,
}

/// A party as the other side of an order sees them (schema 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartySummary {
    pub id: Uuid,
    pub name: String,
    pub phone: String,
    pub rating_centi: Option<u16>,
    pub rating_count: u32,
}

/// Who cancelled (schema 2). Schema 1 wrote a `Role` here, whose two variants encode
/// exactly as the first two below, so schema 1 data reads unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CancelledBy {
    User,
    Associate,
    Ops,
}

/// Who cancelled and the fee (schema 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Cancellation {
    pub by: CancelledBy,
    pub reason: Option<String>,
    pub fee_minor: i64,
}

/// What an invoice line is for (schema 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LineKind {
    BaseFare,
    Time,
    MinimumFareTopUp,
    Surcharge,
    Discount,
    Tax,
    Tip,
    CancellationFee,
}

/// One invoice line (schema 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LineItem {
    pub kind: LineKind,
    pub label: String,
    pub amount_minor: i64,
}

/// An invoice's tax data (schema 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaxLine {
    pub base_minor: i64,
    pub rate_bp: u32,
    pub amount_minor: i64,
}

/// How a payment was made (schema 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PaymentMethod {
    Card,
    Upi,
    Wallet,
    Cash,
}

/// Where a payment stands (schema 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PaymentStatus {
    Pending,
    Succeeded,
    Failed,
}

/// How an invoice was settled (schema 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settlement {
    pub method: PaymentMethod,
    pub transaction_ref: String,
    pub paid_at_ms: u64,
}

/// An invoice (schema 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Invoice {
    pub invoice_id: Uuid,
    pub order_id: Uuid,
    pub currency: String,
    pub lines: Vec<LineItem>,
    pub tax: TaxLine,
    pub total_minor: i64,
    pub commission_minor: i64,
    pub payout_minor: i64,
    pub issued_at_ms: u64,
    pub settlement: Option<Settlement>,
}

/// An entry of an order's event log (schema 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OrderEvent {
    pub order_id: Uuid,
    pub seq: u32,
    pub at_ms: u64,
    pub state: OrderState,
    pub kind: OrderEventKind,
}

/// What happened to an order (schema 1; the last five from schema 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OrderEventKind {
    Allotted {
        user_id: Uuid,
        associate_id: Uuid,
    },
    EnRoute,
    Arrived,
    Started,
    Completed {
        minutes: u32,
    },
    Billed {
        invoice_id: Uuid,
        total_minor: i64,
    },
    Paid {
        payment_id: Uuid,
        method: PaymentMethod,
        amount_minor: i64,
    },
    Closed,
    Cancelled {
        by: Role,
        reason: Option<String>,
        fee_minor: i64,
    },
    /// Schema 2: cancelled with a fee, invoiced with the cancellation.
    CancelledWithFee {
        by: Role,
        reason: Option<String>,
        fee_minor: i64,
        invoice_id: Uuid,
    },
    /// Schema 2: a cancelled order's fee was paid.
    FeePaid {
        payment_id: Uuid,
        method: PaymentMethod,
        amount_minor: i64,
    },
    /// Schema 2: ops cancelled the order by hand.
    OpsCancelled {
        reason: String,
    },
    /// Schema 2: ops marked the work done by hand.
    OpsCompleted {
        minutes: u32,
        reason: String,
    },
    /// Schema 2: no progress for the state's stall time.
    Stalled {
        state: OrderState,
        idle_ms: u64,
        action: Option<String>,
    },
}

/// Prices of one task type (schema 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskPricing {
    pub task: String,
    pub base_minor: i64,
    pub per_minute_minor: i64,
    pub minimum_minor: i64,
}

/// The night surcharge (schema 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NightSurcharge {
    pub start_minute: u16,
    pub end_minute: u16,
    pub rate_bp: u32,
}

/// The cancellation policy (schema 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CancellationPolicy {
    pub free_minutes: u32,
    pub fee_minor: i64,
}

/// The pricing settings (schema 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PricingSettings {
    pub currency: String,
    pub utc_offset_minutes: i16,
    pub tasks: Vec<TaskPricing>,
    pub night: Option<NightSurcharge>,
    pub commission_bp: u32,
    pub tax_bp: u32,
    pub cancellation: CancellationPolicy,
}

/// What a discount takes off (schema 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DiscountKind {
    Percent { rate_bp: u32, cap_minor: i64 },
    Flat { amount_minor: i64 },
}

/// A discount code (schema 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DiscountCode {
    pub code: String,
    pub kind: DiscountKind,
    pub expires_at_ms: Option<u64>,
    pub min_order_minor: i64,
    pub once_per_user: bool,
}

/// A postal address (schema 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Address {
    pub label: String,
    pub line: String,
    pub point: Option<Point>,
}

/// A date worth remembering (schema 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LifeEvent {
    pub kind: String,
    pub date: String,
    pub label: Option<String>,
}

/// A user's profile (schema 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct UserProfile {
    pub id: Uuid,
    pub name: String,
    pub phone: String,
    pub email: Option<String>,
    pub addresses: Vec<Address>,
    pub date_of_birth: Option<String>,
    pub life_events: Vec<LifeEvent>,
    pub rating_sum: u64,
    pub rating_count: u32,
    pub created_at_ms: u64,
}

/// An associate's profile (schema 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AssociateProfile {
    pub id: Uuid,
    pub name: String,
    pub phone: String,
    pub skills: Vec<String>,
    pub home_zone: Option<Zone>,
    pub rating_sum: u64,
    pub rating_count: u32,
    pub created_at_ms: u64,
}

/// An order's current state (schema 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OrderRecord {
    pub order_id: Uuid,
    pub request_id: Uuid,
    pub user_id: Uuid,
    pub associate_id: Uuid,
    pub state: OrderState,
    pub task: String,
    pub pickup: Point,
    pub note: Option<String>,
    pub discount_code: Option<String>,
    pub user: PartySummary,
    pub associate: PartySummary,
    pub pin: String,
    pub allotted_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub completed_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    pub invoice_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    pub cancellation: Option<Cancellation>,
    pub next_seq: u32,
}

/// A tax invoice (schema 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TaxInvoice {
    pub number: u64,
    pub invoice_id: Uuid,
    pub order_id: Uuid,
    pub buyer: String,
    pub supplier: String,
    pub taxable_minor: i64,
    pub rate_bp: u32,
    pub tax_minor: i64,
    pub total_minor: i64,
    pub issued_at_ms: u64,
}

/// A payment (schema 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PaymentRecord {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub idempotency_key: String,
    pub method: PaymentMethod,
    pub instrument_masked: String,
    pub amount_minor: i64,
    pub tip_minor: i64,
    pub status: PaymentStatus,
    pub transaction_ref: Option<String>,
    pub failure: Option<String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// Where feedback came from (schema 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Written by its variant names as they are (Postgres schema 2 did).
pub(crate) enum FeedbackSource {
    App,
    External { source: String },
}

/// A rating (schema 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FeedbackRecord {
    pub id: Uuid,
    pub order_id: Uuid,
    pub about: Role,
    pub rating: u8,
    pub comment: Option<String>,
    pub source: FeedbackSource,
    pub at_ms: u64,
}

/// A request still looking for an associate (schema 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OpenRequest {
    pub request_id: Uuid,
    pub user_id: Uuid,
    pub client_ref: String,
    pub task: String,
    pub pickup: Point,
    pub note: Option<String>,
    pub discount_code: Option<String>,
    pub created_at_ms: u64,
    pub deadline_at_ms: u64,
    pub refused: Vec<Uuid>,
}

/// Whether an associate last asked to take offers (schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Presence {
    pub online: bool,
    pub skills: Vec<String>,
    pub at_ms: u64,
}
