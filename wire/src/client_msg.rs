//! Frames an app sends to the engine.

use serde::{Deserialize, Serialize};

use crate::ids::{OrderId, RequestId};
use crate::model::{Minor, PaymentMethod, Point, Role, Zone};
use crate::protocol::protocol_enum;

protocol_enum! {
    /// A frame from an app (user or associate) to the engine.
    pub enum ClientMessage {
        /// Where the sender is now.
        Location(Location) = "location",
        /// An associate starts taking offers.
        GoOnline(GoOnline) = "go_online",
        /// An associate stops taking offers.
        GoOffline(GoOffline) = "go_offline",
        /// An associate sets or clears their service zone.
        SetZone(SetZone) = "set_zone",
        /// A user asks for a task.
        Request(TaskRequest) = "request",
        /// A user cancels an open request.
        CancelRequest(CancelRequest) = "cancel_request",
        /// An associate accepts an offer.
        Accept(Accept) = "accept",
        /// An associate declines an offer.
        Decline(Decline) = "decline",
        /// The associate sets out for the pickup.
        EnRoute(EnRoute) = "en_route",
        /// The associate is at the pickup.
        Arrived(Arrived) = "arrived",
        /// The associate starts work with the user's PIN.
        Start(Start) = "start",
        /// Either side marks the work complete.
        Complete(Complete) = "complete",
        /// Either side cancels an order before work starts.
        CancelOrder(CancelOrder) = "cancel_order",
        /// The user pays the invoice through the gateway.
        Pay(Pay) = "pay",
        /// The associate confirms they were paid in cash.
        CashReceived(CashReceived) = "cash_received",
        /// Either side rates the other after close.
        Feedback(Feedback) = "feedback",
        /// Keep-alive; the engine answers with its own heartbeat.
        Heartbeat(Heartbeat) = "heartbeat",
    }
}

impl ClientMessage {
    /// Whether a party with `role` may send this frame.
    pub fn allowed_for(&self, role: Role) -> bool {
        use ClientMessage::*;
        match self {
            Location(_) | Complete(_) | CancelOrder(_) | Feedback(_) | Heartbeat(_) => true,
            GoOnline(_) | GoOffline(_) | SetZone(_) | Accept(_) | Decline(_) | EnRoute(_)
            | Arrived(_) | Start(_) | CashReceived(_) => role == Role::Associate,
            Request(_) | CancelRequest(_) | Pay(_) => role == Role::User,
        }
    }

    /// The client reference the frame carries, echoed in any error about it.
    pub fn client_ref(&self) -> Option<&str> {
        match self {
            ClientMessage::Request(r) => Some(&r.client_ref),
            ClientMessage::Pay(p) => Some(&p.idempotency_key),
            _ => None,
        }
    }
}

/// `location`: the sender's position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Where the sender is.
    pub point: Point,
    /// Reported accuracy in metres, if the device gives one.
    #[serde(default)]
    pub accuracy_m: Option<u32>,
}

/// `go_online`: start taking offers for these task types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoOnline {
    /// Task type names; empty means the skills on the associate's profile.
    #[serde(default)]
    pub skills: Vec<String>,
}

/// `go_offline`: stop taking offers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GoOffline {}

/// `set_zone`: only offer requests whose pickup is inside `zone` (none clears it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetZone {
    /// The zone, or none for anywhere.
    #[serde(default)]
    pub zone: Option<Zone>,
}

/// `request`: a user asks for a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRequest {
    /// The client's own reference, echoed in the answer and in errors.
    pub client_ref: String,
    /// Task type name.
    pub task: String,
    /// Where the task starts.
    pub pickup: Point,
    /// A note for the associate.
    #[serde(default)]
    pub note: Option<String>,
    /// A discount code to apply at billing.
    #[serde(default)]
    pub discount_code: Option<String>,
}

/// `cancel_request`: the user withdraws an open request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelRequest {
    /// The request.
    pub request_id: RequestId,
}

/// `accept`: the associate takes the offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accept {
    /// The offered request.
    pub request_id: RequestId,
}

/// `decline`: the associate refuses the offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decline {
    /// The offered request.
    pub request_id: RequestId,
}

/// `en_route`: the associate sets out for the pickup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnRoute {
    /// The order.
    pub order_id: OrderId,
}

/// `arrived`: the associate is at the pickup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arrived {
    /// The order.
    pub order_id: OrderId,
}

/// `complete`: the work is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Complete {
    /// The order.
    pub order_id: OrderId,
}

/// `start`: begin work, proving presence with the user's PIN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Start {
    /// The order.
    pub order_id: OrderId,
    /// The 4-digit PIN the user holds.
    pub pin: String,
}

/// `cancel_order`: cancel before work starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelOrder {
    /// The order.
    pub order_id: OrderId,
    /// Why, in free text.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `pay`: pay the order's invoice through the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pay {
    /// The order.
    pub order_id: OrderId,
    /// Card, UPI or wallet (cash is confirmed by the associate instead).
    pub method: PaymentMethod,
    /// The card token or number, UPI address or wallet id, as the gateway knows it.
    pub instrument: String,
    /// The client's key: a retry with the same key never charges twice.
    pub idempotency_key: String,
    /// Optional tip in minor units.
    #[serde(default)]
    pub tip_minor: Option<Minor>,
}

/// `cash_received`: the associate confirms cash payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CashReceived {
    /// The order.
    pub order_id: OrderId,
    /// The amount received, which must cover the invoice.
    pub amount_minor: Minor,
}

/// `feedback`: rate the other party after close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// The order.
    pub order_id: OrderId,
    /// 1 to 5 stars.
    pub rating: u8,
    /// Up to 1 000 characters.
    #[serde(default)]
    pub comment: Option<String>,
}

/// `heartbeat`: keep-alive.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Echoed in the engine's heartbeat.
    #[serde(default)]
    pub nonce: Option<u64>,
}
