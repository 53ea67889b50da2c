//! The records the store keeps.

use serde::{Deserialize, Serialize};
use wire::model::{
    Cancellation, Minor, OrderState, PartySummary, PaymentMethod, PaymentStatus, Point, Role,
    UnixMs, Zone,
};
use wire::{AssociateId, FeedbackId, InvoiceId, OrderId, PaymentId, RequestId, UserId};

/// A postal address on a user's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Address {
    /// "home", "work"...
    pub label: String,
    /// The address text.
    pub line: String,
    /// Where it is.
    pub point: Option<Point>,
}

/// A date worth remembering (birthday, anniversary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LifeEvent {
    /// "birthday", "anniversary"...
    pub kind: String,
    /// ISO date, `YYYY-MM-DD`.
    pub date: String,
    /// Free text.
    pub label: Option<String>,
}

/// A user's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserProfile {
    /// The user.
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// Phone number.
    pub phone: String,
    /// Email address.
    pub email: Option<String>,
    /// Saved addresses.
    pub addresses: Vec<Address>,
    /// ISO date of birth.
    pub date_of_birth: Option<String>,
    /// Birthdays, anniversaries and the like.
    pub life_events: Vec<LifeEvent>,
    /// Sum of ratings received.
    pub rating_sum: u64,
    /// Number of ratings received.
    pub rating_count: u32,
    /// When created.
    pub created_at_ms: UnixMs,
}

/// An associate's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssociateProfile {
    /// The associate.
    pub id: AssociateId,
    /// Display name.
    pub name: String,
    /// Phone number.
    pub phone: String,
    /// Task type names they perform.
    pub skills: Vec<String>,
    /// Where they are willing to work, if limited.
    pub home_zone: Option<Zone>,
    /// Sum of ratings received.
    pub rating_sum: u64,
    /// Number of ratings received.
    pub rating_count: u32,
    /// When created.
    pub created_at_ms: UnixMs,
}

/// Average rating in hundredths, if any ratings.
pub fn rating_centi(sum: u64, count: u32) -> Option<u16> {
    if count == 0 {
        return None;
    }
    // Half-up rounding of sum * 100 / count; ratings are 1..=5 so this fits in u16.
    let centi = (sum * 200 + u64::from(count)) / (2 * u64::from(count));
    Some(centi.min(500) as u16)
}

/// How the other side of an order sees a party with these profile fields.
fn party_summary(
    id: uuid::Uuid,
    name: &str,
    phone: &str,
    rating_sum: u64,
    rating_count: u32,
) -> PartySummary {
    PartySummary {
        id,
        name: name.to_owned(),
        phone: phone.to_owned(),
        rating_centi: rating_centi(rating_sum, rating_count),
        rating_count,
    }
}

impl UserProfile {
    /// How the other side of an order sees this user.
    pub fn summary(&self) -> PartySummary {
        party_summary(
            self.id.0,
            &self.name,
            &self.phone,
            self.rating_sum,
            self.rating_count,
        )
    }
}

impl AssociateProfile {
    /// How the other side of an order sees this associate.
    pub fn summary(&self) -> PartySummary {
        party_summary(
            self.id.0,
            &self.name,
            &self.phone,
            self.rating_sum,
            self.rating_count,
        )
    }
}

/// An order's current state, with everything needed to rebuild its actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderRecord {
    /// The order.
    pub order_id: OrderId,
    /// The request it came from.
    pub request_id: RequestId,
    /// The user.
    pub user_id: UserId,
    /// The associate.
    pub associate_id: AssociateId,
    /// Current state.
    pub state: OrderState,
    /// Task type name.
    pub task: String,
    /// Where the task starts.
    #[cfg_attr(feature = "openapi", schema(value_type = wire::model::Point))]
    pub pickup: geo::LatLng,
    /// The user's note.
    pub note: Option<String>,
    /// Discount code given with the request.
    pub discount_code: Option<String>,
    /// The user at allotment.
    pub user: PartySummary,
    /// The associate at allotment.
    pub associate: PartySummary,
    /// The 4-digit start PIN.
    pub pin: String,
    /// When allotted.
    pub allotted_at_ms: UnixMs,
    /// When work started.
    pub started_at_ms: Option<UnixMs>,
    /// When work completed.
    pub completed_at_ms: Option<UnixMs>,
    /// When it reached closed or cancelled.
    pub ended_at_ms: Option<UnixMs>,
    /// The invoice, once billed.
    pub invoice_id: Option<InvoiceId>,
    /// The successful payment, once paid.
    pub payment_id: Option<PaymentId>,
    /// Set when cancelled.
    pub cancellation: Option<Cancellation>,
    /// The sequence number the next event gets.
    pub next_seq: u32,
}

impl OrderRecord {
    /// Whether the order was cancelled with a fee that is not paid yet: it stays open
    /// (and is recovered after a restart) until the fee is paid.
    pub fn owes_fee(&self) -> bool {
        self.state == OrderState::Cancelled
            && self.payment_id.is_none()
            && self.cancellation.as_ref().is_some_and(|c| c.fee_minor > 0)
    }
}

/// A sequentially numbered tax invoice, issued with every invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaxInvoice {
    /// Sequential number, gap-free per store.
    pub number: u64,
    /// The invoice it documents.
    pub invoice_id: InvoiceId,
    /// The order.
    pub order_id: OrderId,
    /// Buyer (the user).
    pub buyer: String,
    /// Supplier (the associate).
    pub supplier: String,
    /// Taxable base.
    pub taxable_minor: Minor,
    /// Rate in basis points.
    pub rate_bp: u32,
    /// Tax.
    pub tax_minor: Minor,
    /// Total including tax and tip.
    pub total_minor: Minor,
    /// When issued.
    pub issued_at_ms: UnixMs,
}

/// A payment attempt and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PaymentRecord {
    /// The payment.
    pub payment_id: PaymentId,
    /// The order paid for.
    pub order_id: OrderId,
    /// Who pays.
    pub user_id: UserId,
    /// The client's idempotency key (unique per user).
    pub idempotency_key: String,
    /// How.
    pub method: PaymentMethod,
    /// The instrument with all but the last four characters masked.
    pub instrument_masked: String,
    /// Amount, tip included.
    pub amount_minor: Minor,
    /// Tip part of the amount.
    pub tip_minor: Minor,
    /// Where it stands.
    pub status: PaymentStatus,
    /// Gateway reference, once known.
    pub transaction_ref: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
    /// When created.
    pub created_at_ms: UnixMs,
    /// When last changed.
    pub updated_at_ms: UnixMs,
}

/// Where a piece of feedback came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FeedbackSource {
    /// From a party's app, once per party per order.
    App,
    /// Gathered elsewhere (a social network), posted over HTTP.
    External {
        /// The source's name ("twitter", "instagram").
        source: String,
    },
}

/// A rating and comment about one party of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedbackRecord {
    /// The entry.
    pub id: FeedbackId,
    /// The order.
    pub order_id: OrderId,
    /// The role of the party being rated.
    pub about: Role,
    /// 1 to 5.
    pub rating: u8,
    /// Free text.
    pub comment: Option<String>,
    /// Where it came from.
    pub source: FeedbackSource,
    /// When received.
    pub at_ms: UnixMs,
}

/// A request still looking for an associate: what recovery resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenRequest {
    /// The request.
    pub request_id: RequestId,
    /// Who asked.
    pub user_id: UserId,
    /// The user's reference for it.
    pub client_ref: String,
    /// Task type name.
    pub task: String,
    /// Where the task starts.
    pub pickup: geo::LatLng,
    /// The user's note.
    pub note: Option<String>,
    /// Discount code given with the request.
    pub discount_code: Option<String>,
    /// When the user asked.
    pub created_at_ms: UnixMs,
    /// When the user is told nobody is available.
    pub deadline_at_ms: UnixMs,
    /// Associates who declined or let an offer expire: never offered this request again.
    pub refused: Vec<AssociateId>,
}

/// Whether an associate last asked to take offers, and for which task types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// Online (taking offers) or offline.
    pub online: bool,
    /// Task type names they went online for.
    pub skills: Vec<String>,
    /// When they last changed it.
    pub at_ms: UnixMs,
}

/// What a payment gateway's ledger holds for one idempotency key: the first outcome
/// ever recorded for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerOutcome {
    /// Captured, with the gateway's transaction reference.
    Captured {
        /// The reference.
        transaction_ref: String,
    },
    /// Declined, with why.
    Declined {
        /// Why.
        reason: String,
    },
    /// Voided before any charge: a charge with this key is refused.
    Voided,
}

impl LedgerOutcome {
    /// Its name in the ledger (`captured`, `declined`, `voided`) and its detail.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            LedgerOutcome::Captured { transaction_ref } => ("captured", transaction_ref),
            LedgerOutcome::Declined { reason } => ("declined", reason),
            LedgerOutcome::Voided => ("voided", ""),
        }
    }

    /// The outcome named `outcome` with `detail`; none for an unknown name.
    pub fn from_parts(outcome: &str, detail: String) -> Option<Self> {
        match outcome {
            "captured" => Some(LedgerOutcome::Captured {
                transaction_ref: detail,
            }),
            "declined" => Some(LedgerOutcome::Declined { reason: detail }),
            "voided" => Some(LedgerOutcome::Voided),
            _ => None,
        }
    }
}
