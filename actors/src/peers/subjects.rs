//! The core NATS subjects nodes talk on. A subject names what a message is for (a cell,
//! an associate, a request, an order, a party); only the node serving that thing
//! subscribes, so NATS's own interest routing is the directory.

use geo::ShardId;
use wire::{AssociateId, OrderId, PartyId, RequestId};

/// A cell's messages, to its owner, each on `<this>.<name>`: `index` (index changes),
/// `search` (candidate searches), `start` (requests whose pickup is in the cell: their
/// offer loop runs there).
pub(crate) fn cell(shard: ShardId) -> String {
    format!("speedy.cell.{:x}", shard.as_u64())
}

/// Cells changed owner: every node re-sends the associates it indexes there.
pub(crate) const REINDEX: &str = "speedy.reindex";

/// Reservations, withdrawals and releases: to the node running the associate's actor.
pub(crate) fn associate(id: AssociateId) -> String {
    format!("speedy.associate.{id}")
}

/// Answers and cancels: to the node running the request's offer loop.
pub(crate) fn request(id: RequestId) -> String {
    format!("speedy.request.{id}")
}

/// Actions on an order: to the node running its actor.
pub(crate) fn order(id: OrderId) -> String {
    format!("speedy.order.{id}")
}

/// Frames and order membership: to the node holding the party's connection.
pub(crate) fn party(party: PartyId) -> String {
    match party {
        PartyId::User(u) => format!("speedy.party.user.{u}"),
        PartyId::Associate(a) => format!("speedy.party.associate.{a}"),
    }
}
