//! What nodes say to the node holding a party's connection, as JSON on the party's
//! subject (parties are connections, not actors; messages for actors are the actors'
//! own messages, served by [`super::remote`]).

use serde::{Deserialize, Serialize};
use wire::{OrderId, PartyId, RequestId, ServerMessage};

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
