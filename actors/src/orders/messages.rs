//! Order messages: what the handle asks order, billing, payment and feedback actors,
//! and what they tell each other. Actor bodies live in their own files.

use actix::prelude::*;
use wire::model::{Invoice, Minor, OrderSnapshot, PaymentMethod, Role};
use wire::{OrderId, PartyId};

use crate::error::ActorError;

// Order actor.

/// A party acts on the order.
#[derive(Debug, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Act {
    /// Who acts (must be on the order).
    pub party: PartyId,
    /// What they do.
    pub action: Action,
}

/// The order as a party may see it.
#[derive(Debug, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Result<OrderSnapshot, ActorError>")]
pub struct View {
    /// Who asks (must be on the order).
    pub party: PartyId,
}

/// The user pays the invoice through the gateway.
#[derive(Debug, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Pay {
    /// Who pays (must be the order's user).
    pub party: PartyId,
    /// Card, UPI or wallet.
    pub method: PaymentMethod,
    /// The instrument as the gateway knows it.
    pub instrument: String,
    /// The user's idempotency key.
    pub idempotency_key: String,
    /// Tip in minor units.
    pub tip_minor: Minor,
}

/// The associate confirms cash.
#[derive(Debug, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Result<(), ActorError>")]
pub struct CashReceived {
    /// Who confirms (must be the order's associate).
    pub party: PartyId,
    /// How much they received.
    pub amount_minor: Minor,
}

/// Billing priced the order.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Invoiced {
    /// The invoice.
    pub invoice: Invoice,
    /// Its tax invoice.
    pub tax: storage::TaxInvoice,
}

/// A payment's outcome became known.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Settled {
    /// The payment, succeeded or failed.
    pub payment: storage::PaymentRecord,
}

/// Ops end an order by hand (admin API), with a reason kept in its events.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct OpsAct {
    /// What ops do.
    pub action: OpsAction,
    /// Why (recorded in the order's events).
    pub reason: String,
}

/// What ops can do to an open order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsAction {
    /// Cancel it, without a fee, whatever state it is in; the associate is freed.
    Cancel,
    /// Mark started work done; billing and payment follow as usual.
    Complete,
}

/// What a party can do to an order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Action {
    /// The associate sets out.
    EnRoute,
    /// The associate is at the pickup.
    Arrived,
    /// The associate starts work with the user's PIN.
    Start {
        /// The PIN.
        pin: String,
    },
    /// Either side marks the work done.
    Complete,
    /// Either side cancels before work starts.
    Cancel {
        /// Why.
        reason: Option<String>,
    },
}

// Billing actor.

/// Price a completed order.
#[derive(Debug, Message)]
#[rtype(result = "Result<(Invoice, storage::TaxInvoice), ActorError>")]
pub struct Bill {
    /// The order, in state completed.
    pub order: storage::OrderRecord,
    /// Billable minutes.
    pub minutes: u32,
}

/// An order completed (from the bus).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Completed {
    pub(crate) order: wire::OrderId,
    pub(crate) minutes: u32,
}

// Feedback actor.

/// A rating from a party's app.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Rate {
    /// Who rates (must be on the order); they rate the other side.
    pub party: PartyId,
    /// The order.
    pub order_id: OrderId,
    /// 1 to 5.
    pub rating: u8,
    /// Comment.
    pub comment: Option<String>,
}

/// Feedback gathered elsewhere (social media), posted over HTTP. Once per order, rated
/// party and source: a repeat answers with the rating already recorded.
#[derive(Debug, Message)]
#[rtype(result = "Result<ExternalOutcome, ActorError>")]
pub struct External {
    /// The order.
    pub order_id: OrderId,
    /// Who is rated.
    pub about: Role,
    /// 1 to 5.
    pub rating: u8,
    /// Comment.
    pub comment: Option<String>,
    /// Where it came from.
    pub source: String,
}

/// What became of external feedback.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalOutcome {
    /// The rating on record: this one, or the one recorded before from the same source.
    pub record: storage::FeedbackRecord,
    /// Whether this call recorded it (false: a repeat, nothing changed).
    pub created: bool,
}

/// An order closed (from the bus).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Closed {
    pub(crate) order: OrderId,
}

// Payment actor.

/// Charge a pending payment.
#[derive(Debug, Message)]
#[rtype(result = "storage::PaymentRecord")]
pub struct Charge {
    /// The payment, status pending, already stored.
    pub payment: storage::PaymentRecord,
    /// The full instrument (the record holds it masked).
    pub instrument: String,
    /// The invoice currency.
    pub currency: String,
}

/// Settle a payment a restart left pending: nothing of it is in flight any more, so
/// the first answer from the gateway decides it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Recover {
    /// The pending payment.
    pub payment: storage::PaymentRecord,
}

/// How many payments wait for an outcome.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct PendingCount {}

// The messages that cross nodes, by their names on the wire.

impl crate::peers::remote::Remote for Act {
    const NAME: &'static str = "act";
}

impl crate::peers::remote::Remote for View {
    const NAME: &'static str = "view";
}

impl crate::peers::remote::Remote for Pay {
    const NAME: &'static str = "pay";
}

impl crate::peers::remote::Remote for CashReceived {
    const NAME: &'static str = "cash";
}
