//! Frames the engine sends to an app.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ErrorCode;
use crate::ids::{OrderId, RequestId};
use crate::model::{
    Availability, Invoice, OfferEnd, OrderSnapshot, OrderState, PartySummary, PaymentOutcome,
    Point, Role, UnixMs,
};
use crate::protocol::protocol_enum;

protocol_enum! {
    /// A frame from the engine to an app.
    pub enum ServerMessage {
        /// The connection is authenticated: who you are and the session's settings.
        Welcome(Welcome) = "welcome",
        /// An associate's availability changed (answer to go_online / go_offline).
        Status(Status) = "status",
        /// A user's request was received and is being dispatched.
        RequestReceived(RequestReceived) = "request_received",
        /// An associate is offered a request.
        Offer(Offer) = "offer",
        /// An offer ended without acceptance (cancelled, expired).
        OfferEnded(OfferEnded) = "offer_ended",
        /// A request became an order: sent to both parties.
        Allotted(Allotted) = "allotted",
        /// A request ended with nobody available.
        NoAssociate(NoAssociate) = "no_associate",
        /// A request was cancelled by the user.
        RequestCancelled(RequestCancelled) = "request_cancelled",
        /// The full state of an order (on reconnect, or on request).
        Order(OrderFrame) = "order",
        /// An order moved to a new state.
        OrderUpdate(OrderUpdate) = "order_update",
        /// The other party's position during an order.
        PeerLocation(PeerLocation) = "peer_location",
        /// The invoice for a completed order.
        Invoice(InvoiceFrame) = "invoice",
        /// The outcome of a payment.
        PaymentResult(PaymentResult) = "payment_result",
        /// The order is paid and closed.
        OrderClosed(OrderClosed) = "order_closed",
        /// Please rate the other party.
        FeedbackRequest(FeedbackRequest) = "feedback_request",
        /// Feedback was recorded.
        FeedbackRecorded(FeedbackRecorded) = "feedback_recorded",
        /// Something the client sent was refused.
        Error(ErrorFrame) = "error",
        /// Keep-alive, in answer to a client heartbeat or on the engine's schedule.
        Heartbeat(ServerHeartbeat) = "heartbeat",
        /// The engine is shutting down; reconnect after the delay.
        Shutdown(Shutdown) = "shutdown",
    }
}

/// `welcome`: sent first on every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The authenticated party.
    pub id: Uuid,
    /// Their role.
    pub role: Role,
    /// Protocol version, `speedy.v1`.
    pub protocol: String,
    /// Engine heartbeat interval in seconds.
    pub heartbeat_s: u32,
    /// Engine clock, for offer expiry display.
    pub server_time_ms: UnixMs,
}

/// `status`: an associate's availability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Current availability.
    pub availability: Availability,
    /// Task type names the associate is online for.
    pub skills: Vec<String>,
}

/// `request_received`: the request is accepted for dispatch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestReceived {
    /// The client's reference.
    pub client_ref: String,
    /// The engine's id for the request (use it to cancel).
    pub request_id: RequestId,
    /// When the engine gives up if nobody accepts.
    pub expires_at_ms: UnixMs,
}

/// `offer`: a job offered to one associate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// The request offered.
    pub request_id: RequestId,
    /// Task type name.
    pub task: String,
    /// Where it starts.
    pub pickup: Point,
    /// Distance from the associate in metres.
    pub distance_m: u32,
    /// The user's note.
    pub note: Option<String>,
    /// Answer before this time or the offer moves on.
    pub expires_at_ms: UnixMs,
}

/// `offer_ended`: the offer is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferEnded {
    /// The request that was offered.
    pub request_id: RequestId,
    /// Why.
    pub reason: OfferEnd,
}

/// `allotted`: the order exists; both parties get it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allotted {
    /// The user's reference for the request (user copy only).
    pub client_ref: Option<String>,
    /// The order.
    pub order: Box<OrderSnapshot>,
}

/// `no_associate`: nobody accepted before the request's deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoAssociate {
    /// The client's reference.
    pub client_ref: String,
    /// The request.
    pub request_id: RequestId,
}

/// `request_cancelled`: the cancellation took effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestCancelled {
    /// The client's reference.
    pub client_ref: String,
    /// The request.
    pub request_id: RequestId,
}

/// `order`: the full order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderFrame {
    /// The order as this party may see it.
    pub order: Box<OrderSnapshot>,
}

/// `order_update`: an order changed state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderUpdate {
    /// The order.
    pub order_id: OrderId,
    /// The new state.
    pub state: OrderState,
    /// When.
    pub at_ms: UnixMs,
    /// Which side caused it, if a party did.
    pub by: Option<Role>,
}

/// `peer_location`: the other party's position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerLocation {
    /// The order both are on.
    pub order_id: OrderId,
    /// The other party's position.
    pub point: Point,
    /// When it was reported.
    pub at_ms: UnixMs,
}

/// `invoice`: the bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceFrame {
    /// The invoice.
    pub invoice: Box<Invoice>,
}

/// `payment_result`: where a payment stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentResult {
    /// The outcome.
    pub payment: Box<PaymentOutcome>,
}

/// `order_closed`: done; the final invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderClosed {
    /// The order.
    pub order_id: OrderId,
    /// The paid invoice.
    pub invoice: Box<Invoice>,
}

/// `feedback_request`: rate the other party.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRequest {
    /// The order.
    pub order_id: OrderId,
    /// Whom to rate.
    pub about: Box<PartySummary>,
}

/// `feedback_recorded`: thanks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRecorded {
    /// The order rated.
    pub order_id: OrderId,
}

/// `error`: a refused frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
    /// The client reference of the refused frame, if it had one.
    pub client_ref: Option<String>,
}

/// `heartbeat`: keep-alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerHeartbeat {
    /// Engine clock.
    pub server_time_ms: UnixMs,
    /// The client's nonce, when answering one.
    pub nonce: Option<u64>,
}

/// `shutdown`: the engine is going away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shutdown {
    /// Reconnect after this many milliseconds.
    pub reconnect_after_ms: u32,
}
