//! What nodes say to each other, as JSON on core NATS subjects.

use geo::{LatLng, TaskType};
use serde::{Deserialize, Serialize};
use wire::model::{OfferEnd, OrderSnapshot, UnixMs};
use wire::{AssociateId, Offer, OrderId, PartyId, RequestId, ServerMessage, UserId};

use crate::dispatch::messages::RefusedBy;
use crate::error::ActorError;
use crate::orders::messages::Action;

/// To the node running an associate's actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ToAssociate {
    /// Reserve them and show the offer (answered with `Result<(), Refusal>`).
    Reserve {
        /// The asking request.
        request: RequestId,
        /// Its task type.
        task: TaskType,
        /// Its pickup.
        pickup: LatLng,
        /// The offer frame.
        offer: Offer,
    },
    /// The request withdraws its offer.
    Withdraw {
        /// The request.
        request: RequestId,
        /// Why.
        reason: OfferEnd,
    },
    /// Their order ended.
    Release {
        /// The order.
        order: OrderId,
    },
    /// They are on this order (resumed by a new owner).
    MarkBusy {
        /// The order.
        order: OrderId,
    },
}

/// To the node running a request's offer loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ToRequest {
    /// The offered associate accepts (answered with an [`AcceptOutcome`]).
    Accept {
        /// Who.
        associate: AssociateId,
        /// When they were shown the offer (absent from older nodes).
        #[serde(default)]
        offered_at_ms: Option<UnixMs>,
    },
    /// The offered associate declined or went away.
    Refused {
        /// Who.
        associate: AssociateId,
        /// How.
        why: RefusedBy,
        /// When they were shown the offer (absent from older nodes).
        #[serde(default)]
        offered_at_ms: Option<UnixMs>,
        /// When their reservation ended (absent from older nodes).
        #[serde(default)]
        ended_at_ms: Option<UnixMs>,
    },
    /// The user cancels (answered with `Result<(), ActorError>`).
    Cancel {
        /// Who asks.
        user: UserId,
    },
}

/// What a party asks of an order hosted on another node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum OrderAsk {
    /// A lifecycle action.
    Act(Action),
    /// A payment.
    Pay(wire::Pay),
    /// Cash confirmed.
    Cash(wire::CashReceived),
    /// The order as the party may see it.
    View,
}

/// To the node running an order's actor (answered with [`OrderReply`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ToOrder {
    /// Who asks.
    pub party: PartyId,
    /// What.
    pub ask: OrderAsk,
}

/// The answer to a [`ToOrder`].
pub(crate) type OrderReply = Result<Option<OrderSnapshot>, ActorError>;

/// To the node holding a party's connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ToParty {
    /// A frame for the app.
    Frame(ServerMessage),
    /// A newer connection on `node` takes over (answered once the old one is gone).
    TakeOver {
        /// The node of the new connection.
        node: String,
    },
    /// Their open request ended.
    RequestEnded {
        /// The request.
        request: RequestId,
    },
    /// They are on an order hosted elsewhere; `peer` is whom their position is relayed
    /// to, while it is.
    Joined {
        /// The order.
        order: OrderId,
        /// The other side, while live tracking runs.
        peer: Option<PartyId>,
    },
    /// Live tracking of the order stopped.
    Untracked {
        /// The order.
        order: OrderId,
    },
    /// They are off the order.
    Left {
        /// The order.
        order: OrderId,
    },
}
