//! The address book of orders: which order actors run here and the refs that reach
//! them on any node, who is on which order, and whose positions are relayed to whom.

use std::time::Duration;

use actix::Addr;
use wire::{OrderId, PartyId};

use crate::error::ActorError;
use crate::orders::messages;
use crate::orders::order::OrderActor;
use crate::peers::messages::ToParty;
use crate::peers::remote::{self, Answer, Ref, Remote, Routes, Subject, Unreached};

use super::handle::{Orders, Track, open_order_in_store, side_of, still_on};

impl Orders {
    /// An order: its actor if it runs here, else (in cluster mode) its subject.
    pub(super) fn order_ref(&self, order: OrderId) -> Option<OrderRef> {
        if let Some(addr) = self.shared.actors.get(&order) {
            return Some(Ref::Here(addr.clone()));
        }
        self.shared.dispatch.peers().map(|peers| Ref::There {
            peers: peers.clone(),
            subject: Subject::one(crate::peers::subjects::order(order)),
        })
    }

    /// The error for an order whose actor is nowhere: ended, or (in cluster mode, still
    /// open) between its old owner and its new one, so the app should try again.
    pub(super) fn unserved(&self, party: PartyId, order: OrderId) -> ActorError {
        if self.shared.dispatch.peers().is_none() {
            return self.ended(party, order);
        }
        match self.shared.store.order(order) {
            Ok(Some(o)) if side_of(&o, party).is_some() && still_on(&o, party) => {
                ActorError::PeerUnavailable(format!("order {order} is changing nodes"))
            }
            _ => self.ended(party, order),
        }
    }

    /// Asks `order`'s actor, wherever it runs, with `extra` time beyond the call timeout
    /// on another node; `Ok(None)` if no node runs it.
    pub(super) async fn ask_order<M: Remote>(
        &self,
        order: OrderId,
        msg: M,
        extra: Duration,
    ) -> Result<Option<M::Result>, ActorError>
    where
        OrderActor: actix::Handler<M>,
        M::Result: Answer,
    {
        let Some(to) = self.order_ref(order) else {
            return Ok(None);
        };
        match to.ask_within(msg, extra).await {
            Ok(answer) => Ok(Some(answer)),
            Err(Unreached::Gone) => Ok(None),
            Err(Unreached::Peer(e)) => Err(e.into()),
        }
    }

    /// Registers a running order actor and its parties (only the user, for an order
    /// that just owes a cancellation fee).
    pub(crate) fn register(&self, record: &storage::OrderRecord, addr: Addr<OrderActor>) {
        let user = PartyId::User(record.user_id);
        let associate = PartyId::Associate(record.associate_id);
        let addr_for_peers = addr.clone();
        self.shared.actors.insert(record.order_id, addr);
        // On the board before anyone hears of the order: the actor posts it only once it
        // has started, on its own thread.
        let now_ms = self.shared.dispatch.now_ms();
        self.shared
            .board
            .post_if_absent(crate::orders::order::board_entry(record, now_ms, false));
        metrics::gauge!(crate::telemetry::ORDER_ACTORS).set(self.shared.actors.len() as f64);
        self.shared.by_party.insert(user, record.order_id);
        let tracked =
            !record.state.is_terminal() && record.state < wire::model::OrderState::Completed;
        if let Some(peers) = self.shared.dispatch.peers() {
            serve_order(peers, record.order_id, addr_for_peers);
            let owes = record.owes_fee();
            for (party, peer, on) in [(user, associate, true), (associate, user, !owes)] {
                if on {
                    self.tell(
                        party,
                        ToParty::Joined {
                            order: record.order_id,
                            peer: (tracked && !owes).then_some(peer),
                        },
                    );
                }
            }
        }
        if record.owes_fee() {
            return;
        }
        self.shared.by_party.insert(associate, record.order_id);
        if tracked {
            self.shared.tracking.insert(
                user,
                Track {
                    order: record.order_id,
                    peer: associate,
                },
            );
            self.shared.tracking.insert(
                associate,
                Track {
                    order: record.order_id,
                    peer: user,
                },
            );
        }
    }

    /// Stops relaying positions for an order's parties.
    pub(crate) fn stop_tracking(&self, record: &storage::OrderRecord) {
        for party in [
            PartyId::User(record.user_id),
            PartyId::Associate(record.associate_id),
        ] {
            self.mirror_untracked(party, record.order_id);
            self.tell(
                party,
                ToParty::Untracked {
                    order: record.order_id,
                },
            );
        }
    }

    /// In cluster mode, tells `party`'s node about their order.
    pub(super) fn tell(&self, party: PartyId, msg: ToParty) {
        if let Some(peers) = self.shared.dispatch.peers() {
            peers.publish(crate::peers::subjects::party(party), &msg);
        }
    }

    /// `party`, connected here, is on `order` hosted elsewhere (`peer`: whom their
    /// position is relayed to).
    pub(crate) fn mirror_joined(&self, party: PartyId, order: OrderId, peer: Option<PartyId>) {
        if self.shared.actors.contains_key(&order) {
            return;
        }
        self.shared.by_party.insert(party, order);
        if let Some(peer) = peer {
            self.shared.tracking.insert(party, Track { order, peer });
        }
    }

    /// Live tracking of `order` stopped for `party`.
    pub(crate) fn mirror_untracked(&self, party: PartyId, order: OrderId) {
        self.shared
            .tracking
            .remove_if(&party, |_, t| t.order == order);
        self.shared.last_relay.remove(&party);
    }

    /// `party` is off `order` hosted elsewhere.
    pub(crate) fn mirror_left(&self, party: PartyId, order: OrderId) {
        if self.shared.actors.contains_key(&order) {
            return;
        }
        self.mirror_untracked(party, order);
        self.shared.by_party.remove_if(&party, |_, o| *o == order);
    }

    /// The associate is no longer on the order (it owes only a fee, or only the user's
    /// payment is missing): they may take other work.
    pub(crate) fn associate_off(&self, record: &storage::OrderRecord) {
        self.stop_tracking(record);
        let associate = PartyId::Associate(record.associate_id);
        self.shared
            .by_party
            .remove_if(&associate, |_, o| *o == record.order_id);
        self.tell(
            associate,
            ToParty::Left {
                order: record.order_id,
            },
        );
    }

    /// Forgets a finished order.
    pub(crate) fn unregister(&self, record: &storage::OrderRecord) {
        self.stop_tracking(record);
        self.shared.actors.remove(&record.order_id);
        self.shared.board.remove(record.order_id, true);
        metrics::gauge!(crate::telemetry::ORDER_ACTORS).set(self.shared.actors.len() as f64);
        for party in [
            PartyId::User(record.user_id),
            PartyId::Associate(record.associate_id),
        ] {
            self.shared
                .by_party
                .remove_if(&party, |_, o| *o == record.order_id);
            self.tell(
                party,
                ToParty::Left {
                    order: record.order_id,
                },
            );
        }
        if let Some(peers) = self.shared.dispatch.peers() {
            peers.unserve(crate::peers::Served::Order(record.order_id));
        }
    }

    /// The party's open order, if any.
    pub fn open_order_of(&self, party: PartyId) -> Option<OrderId> {
        self.shared.by_party.get(&party).map(|o| *o)
    }

    /// The party's open order wherever it runs: as known here, or in cluster mode read
    /// from the store (they may have reconnected to this node), then followed here.
    pub fn find_open_order(&self, party: PartyId) -> Result<Option<OrderId>, ActorError> {
        let known = self.open_order_of(party);
        if self.shared.dispatch.peers().is_none() {
            return Ok(known);
        }
        if let Some(order) = known {
            // What this node knows is a hint the store confirms: an order's end is durable
            // before anyone hears of it, while its actor here (or the mirror of one on
            // another node) lets go a moment later.
            match self.shared.store.order(order)? {
                Some(record) if still_on(&record, party) => return Ok(Some(order)),
                _ => self.mirror_left(party, order),
            }
        }
        let Some(record) = open_order_in_store(&self.shared.store, party)? else {
            return Ok(None);
        };
        let tracked = record.state < wire::model::OrderState::Completed && !record.owes_fee();
        let peer = match party {
            PartyId::User(_) => PartyId::Associate(record.associate_id),
            PartyId::Associate(_) => PartyId::User(record.user_id),
        };
        self.mirror_joined(party, record.order_id, tracked.then_some(peer));
        Ok(Some(record.order_id))
    }
}

/// An order's actor, here or on another node.
pub(crate) type OrderRef = Ref<Addr<OrderActor>>;

/// What an order takes from other nodes.
static ORDER_ROUTES: std::sync::LazyLock<Routes<Addr<OrderActor>>> =
    std::sync::LazyLock::new(|| {
        Routes::new()
            .with::<messages::Act>()
            .with::<messages::View>()
            .with::<messages::Pay>()
            .with::<messages::CashReceived>()
    });

/// Serves an order whose actor runs here to the other nodes.
fn serve_order(peers: &crate::peers::Peers, order: OrderId, addr: Addr<OrderActor>) {
    let subject = Subject::one(crate::peers::subjects::order(order));
    remote::serve(
        peers,
        crate::peers::Served::Order(order),
        &subject,
        addr,
        &ORDER_ROUTES,
    );
}
