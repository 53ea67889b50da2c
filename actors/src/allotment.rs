//! The hand-off from dispatch to orders: an accepted offer becomes an order.

use actix::Message;
use geo::LatLng;
use wire::model::UnixMs;
use wire::{AssociateId, OrderId, RequestId, UserId};

use crate::error::ActorError;

/// Everything an order is created from.
#[derive(Debug, Clone, PartialEq)]
pub struct Allotment {
    /// The request allotted.
    pub request_id: RequestId,
    /// The user's reference for it.
    pub client_ref: String,
    /// The user.
    pub user_id: UserId,
    /// The associate who accepted.
    pub associate_id: AssociateId,
    /// Task type name.
    pub task: String,
    /// Where the task starts.
    pub pickup: LatLng,
    /// The user's note.
    pub note: Option<String>,
    /// Discount code given with the request.
    pub discount_code: Option<String>,
    /// The associate's distance from the pickup when offered, in metres.
    pub distance_m: u32,
    /// When the user asked.
    pub requested_at_ms: UnixMs,
    /// When the associate accepted.
    pub allotted_at_ms: UnixMs,
}

/// Create the order for an allotment; answered only once it is durable.
#[derive(Debug, Message)]
#[rtype(result = "Result<OrderId, ActorError>")]
pub struct CreateOrder {
    /// The allotment.
    pub allotment: Allotment,
}
