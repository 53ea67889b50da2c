//! Dispatch messages: what the handle asks associates, supervisors and requests, and
//! what they tell each other. Actor bodies live in their own files.

use actix::prelude::*;
use geo::{LatLng, Neighbor, ShardId, Skills, TaskType};
use serde::{Deserialize, Serialize};
use wire::model::{Availability, OfferEnd, UnixMs};
use wire::{AssociateId, Offer, OrderId, RequestId, UserId};

use crate::dispatch::request::{RequestActor, RequestSpec};
use crate::dispatch::{AssociateProfileInfo, ZoneFilter};
use crate::error::ActorError;

// Associate actor.

/// The app connected (again): profile data, and what the app should be shown.
#[derive(Debug, Message)]
#[rtype(result = "AssociateView")]
pub struct Connected {
    /// Skills and zone from the profile.
    pub info: AssociateProfileInfo,
}

/// The app disconnected.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Disconnected {}

/// Start taking offers.
#[derive(Debug, Message)]
#[rtype(result = "Result<AssociateView, ActorError>")]
pub struct GoOnline {
    /// Skills for this shift; none means the profile's.
    pub skills: Option<Skills>,
}

/// Stop taking offers.
#[derive(Debug, Message)]
#[rtype(result = "Result<AssociateView, ActorError>")]
pub struct GoOffline {}

/// A position report needs the actor: the first while available, or one that crossed
/// out of the shard that indexes them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Moved {}

/// Set or clear the service zone.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetZone {
    /// The zone, or none for anywhere.
    pub zone: Option<ZoneFilter>,
}

/// A request asks to reserve the associate and offer them a job (the request is
/// `offer.request_id`); answered with when they were shown it.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "Result<UnixMs, Refusal>")]
pub struct Reserve {
    /// Its task type.
    pub task: TaskType,
    /// Its pickup.
    pub pickup: LatLng,
    /// The offer frame to show.
    pub offer: Offer,
}

/// The request withdraws its offer; answered with when the reservation ended (none if
/// the associate held no reservation for it).
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "Option<UnixMs>")]
pub struct Withdraw {
    /// The request.
    pub request_id: RequestId,
    /// Why.
    pub reason: OfferEnd,
}

/// The associate answers the open offer.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<OrderId>, ActorError>")]
pub struct AnswerOffer {
    /// The request offered.
    pub request_id: RequestId,
    /// Yes or no.
    pub accept: bool,
}

/// The associate's order ended; they are free again.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct Release {
    /// The order that ended.
    pub order: OrderId,
}

/// The associate is on an order recovered at start-up.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct MarkBusy {
    /// The order.
    pub order: OrderId,
}

/// A cell moved to another owner: index this associate there again if indexed there.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Reindex {
    /// The cell.
    pub shard: ShardId,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// Offline, disconnected, reserved by another request, or busy.
    NotAvailable,
    /// Does not perform the task type.
    NotEligible,
    /// The pickup is outside the associate's zone.
    OutsideZone,
}

/// What the associate's app should show.
#[derive(Debug, Clone, PartialEq)]
pub struct AssociateView {
    /// Availability.
    pub availability: Availability,
    /// Skills they are online for.
    pub skills: Skills,
    /// The open offer, if any.
    pub offer: Option<Offer>,
    /// The order in progress, if any.
    pub order: Option<OrderId>,
}

// Request actor.

/// The offered associate accepts.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "AcceptOutcome")]
pub struct AcceptOffer {
    /// Who accepts.
    pub associate: AssociateId,
    /// When they were shown the offer (the engine's clock), if known.
    pub offered_at_ms: Option<UnixMs>,
}

/// The offered associate declined or went away.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
pub struct OfferRefused {
    /// Who.
    pub associate: AssociateId,
    /// How.
    pub why: RefusedBy,
    /// When they were shown the offer (the engine's clock), if known.
    pub offered_at_ms: Option<UnixMs>,
    /// When their reservation ended, if known.
    pub ended_at_ms: Option<UnixMs>,
}

/// The user cancels.
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Cancel {
    /// Who asks (must be the request's user).
    pub user: UserId,
}

/// How an offer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusedBy {
    /// The associate said no.
    Declined,
    /// The associate's app disconnected.
    Disconnected,
}

/// The answer to an acceptance.
#[derive(Debug, Clone, PartialEq, Eq, MessageResponse, Serialize, Deserialize)]
pub enum AcceptOutcome {
    /// The order exists.
    Allotted(OrderId),
    /// The offer had already moved on (window passed, cancelled).
    TooLate,
    /// The order could not be created.
    Failed(ActorError),
}

// Shard supervisor.

/// Index changes wait on the lane: apply them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DrainLane {}

/// The nearest eligible associates in this shard's index only.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Vec<Neighbor<AssociateId>>")]
pub struct LocalNearest {
    /// Search centre.
    pub point: LatLng,
    /// Task type.
    pub task: TaskType,
    /// Radius in metres.
    pub radius_m: f64,
    /// At most this many.
    pub k: usize,
    /// Never these.
    pub exclude: Vec<AssociateId>,
}

/// The nearest eligible associates across every shard the circle reaches.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<Neighbor<AssociateId>>")]
pub struct Candidates {
    /// The search.
    pub search: LocalNearest,
}

/// Start the request actor for a pickup in this shard.
#[derive(Debug, Message)]
#[rtype(result = "Addr<RequestActor>")]
pub struct StartRequest {
    /// The request.
    pub spec: RequestSpec,
}

/// A request this supervisor started has ended.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RequestDone {}

/// Start the offer loop of a stored request on the cell of its pickup (once: a request
/// already running there is left alone).
#[derive(Debug, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), ActorError>")]
pub(crate) struct StartStored {
    /// The request as stored.
    pub(crate) stored: storage::OpenRequest,
    /// Where it comes from.
    pub(crate) provenance: crate::dispatch::Provenance,
}

// The messages that cross nodes, by their names on the wire.

use crate::peers::remote::Remote;

impl Remote for Reserve {
    const NAME: &'static str = "reserve";
}

impl Remote for Withdraw {
    const NAME: &'static str = "withdraw";
}

impl Remote for Release {
    const NAME: &'static str = "release";
}

impl Remote for MarkBusy {
    const NAME: &'static str = "mark_busy";
}

impl Remote for AcceptOffer {
    const NAME: &'static str = "accept";
}

impl Remote for OfferRefused {
    const NAME: &'static str = "refused";
}

impl Remote for Cancel {
    const NAME: &'static str = "cancel";
}

impl Remote for LocalNearest {
    const NAME: &'static str = "search";
}

impl Remote for StartStored {
    const NAME: &'static str = "start";
}
