//! The orders handle: what sessions call to act on orders, the address book of order
//! actors, who is on which order, and live-tracking relay.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::Addr;
use dashmap::DashMap;
use geo::LatLng;
use tokio::time::Instant;
use wire::model::{OrderSnapshot, Role};
use wire::{OrderId, PartyId, PeerLocation};

use crate::dispatch::{AssociateProfileInfo, Dispatch};
use crate::error::ActorError;
use crate::orders::billing::BillingActor;
use crate::orders::bus::EventBus;
use crate::orders::desk::OrderDesk;
use crate::orders::feedback::FeedbackActor;
use crate::orders::gateway::PaymentGateway;
use crate::orders::messages;
use crate::orders::messages::{Action, Recover};
use crate::orders::order::{self, OrderActor};
use crate::orders::payment::{PaymentActor, PaymentConfig};
use crate::orders::stall::StallTimes;
use crate::peers::messages::{OrderAsk, ToOrder, ToParty};
use crate::sessions::Sessions;

/// Order settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderConfig {
    /// Wrong PINs allowed before starting is locked.
    pub pin_attempts: u32,
    /// How long starting stays locked after too many wrong PINs.
    pub pin_lock: Duration,
    /// At most one peer-location frame per party per this interval.
    pub tracking_interval: Duration,
    /// How long each state may last before the order counts as stalled.
    pub stall: StallTimes,
}

impl Default for OrderConfig {
    fn default() -> Self {
        Self {
            pin_attempts: 5,
            pin_lock: Duration::from_secs(300),
            tracking_interval: Duration::from_secs(1),
            stall: StallTimes::default(),
        }
    }
}

/// Who is tracking whom on an open order.
#[derive(Debug, Clone, Copy)]
struct Track {
    order: OrderId,
    peer: PartyId,
}

/// What start-up recovered from the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Open orders whose actors were rebuilt (their associates are busy again).
    pub open_orders: usize,
    /// Of those, cancelled orders whose fee is still owed.
    pub owing_fee: usize,
    /// Payments left pending, now being settled with the gateway.
    pub pending_payments: usize,
}

/// A cheap, cloneable handle on orders.
#[derive(Clone)]
pub struct Orders {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Orders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orders")
            .field("open", &self.shared.actors.len())
            .finish()
    }
}

pub(crate) struct Shared {
    pub(crate) store: storage::Store,
    pub(crate) dispatch: Dispatch,
    pub(crate) config: OrderConfig,
    pub(crate) actors: DashMap<OrderId, Addr<OrderActor>>,
    /// Each party's open order (one per party).
    by_party: DashMap<PartyId, OrderId>,
    /// Parties whose positions are relayed to the other side.
    tracking: DashMap<PartyId, Track>,
    last_relay: DashMap<PartyId, Instant>,
    /// Open orders and recent tracks, for ops.
    board: super::board::Board,
    bus: EventBus,
    /// How long a payment may wait on the gateway.
    gateway_timeout: Duration,
    billing: OnceLock<Addr<BillingActor>>,
    payments: OnceLock<Addr<PaymentActor>>,
    feedback: OnceLock<Addr<FeedbackActor>>,
}

impl Orders {
    /// Starts the order desk, billing, payment and feedback actors over `store`, wires
    /// the desk to `dispatch`, and recovers the orders and payments left open.
    pub fn start(
        store: storage::Store,
        dispatch: Dispatch,
        gateway: Arc<dyn PaymentGateway>,
        config: OrderConfig,
        payment_config: PaymentConfig,
    ) -> Result<(Self, Recovered), ActorError> {
        use actix::Actor;
        let orders = Self {
            shared: Arc::new(Shared {
                bus: EventBus::new(store.clone()),
                store,
                dispatch,
                config,
                actors: DashMap::new(),
                by_party: DashMap::new(),
                tracking: DashMap::new(),
                last_relay: DashMap::new(),
                board: Default::default(),
                gateway_timeout: payment_config.gateway_timeout,
                billing: OnceLock::new(),
                payments: OnceLock::new(),
                feedback: OnceLock::new(),
            }),
        };
        let o = orders.clone();
        let _ = orders
            .shared
            .billing
            .set(BillingActor::new(o.clone(), o.shared.bus.subscribe()?).start());
        let _ = orders
            .shared
            .payments
            .set(PaymentActor::new(gateway, payment_config, o.clone()).start());
        let _ = orders
            .shared
            .feedback
            .set(FeedbackActor::new(o.clone(), o.shared.bus.subscribe()?).start());
        let desk = OrderDesk::new(o).start();
        orders.shared.dispatch.set_order_sink(desk.recipient());
        crate::telemetry::count_transitions(orders.shared.bus.subscribe()?);
        // In cluster mode each node recovers the orders of the cells it gains.
        let recovered = if orders.shared.dispatch.peers().is_some() {
            Recovered::default()
        } else {
            orders.recover(|_| true)?
        };
        Ok((orders, recovered))
    }

    /// The shard of an order's pickup.
    fn shard_of(&self, record: &storage::OrderRecord) -> Option<geo::ShardId> {
        let point = record.pickup.to_latlng().ok()?;
        Some(self.shared.dispatch.shared.map.shard_of(point))
    }

    /// The store to write `record` through: in cluster mode fenced with the epoch of
    /// this node's claim on its cell, and refused if this node no longer holds the cell.
    pub(crate) fn store_for(
        &self,
        record: &storage::OrderRecord,
    ) -> Result<storage::Store, ActorError> {
        let Some(peers) = self.shared.dispatch.peers() else {
            return Ok(self.shared.store.clone());
        };
        let shard = self
            .shard_of(record)
            .ok_or_else(|| ActorError::Internal("an order without a valid pickup".into()))?;
        match peers.epoch_of(shard) {
            Some(epoch) => Ok(self.shared.store.fenced(epoch)),
            None => Err(ActorError::PeerUnavailable(format!(
                "cell {shard} of order {} is not served by this node any more",
                record.order_id
            ))),
        }
    }

    /// This node now serves `shards`: rebuild their open orders that do not run here,
    /// and settle their pending payments.
    pub(crate) async fn cells_gained(&self, shards: &[geo::ShardId]) {
        match self.take_over_orders(shards).await {
            Ok(r) if r == Recovered::default() => {}
            Ok(r) => tracing::info!(
                open_orders = r.open_orders,
                pending_payments = r.pending_payments,
                cells = shards.len(),
                "open orders taken over with cells"
            ),
            Err(e) => {
                tracing::error!(error = %e, "could not take over the open orders of gained cells")
            }
        }
    }

    /// This node no longer serves `shard`: stop the order actors whose pickup is there
    /// (resolves once they are out of the address book).
    pub(crate) async fn cell_lost(&self, shard: geo::ShardId) {
        crate::peers::relinquish_all(&self.shared.actors, shard).await;
    }

    /// An order's actor stopped here because its cell moved: forget it here without
    /// telling its parties (the new owner does).
    pub(crate) fn handed_over(&self, record: &storage::OrderRecord) {
        self.shared.actors.remove(&record.order_id);
        self.shared.board.remove(record.order_id, false);
        metrics::gauge!(crate::telemetry::ORDER_ACTORS).set(self.shared.actors.len() as f64);
        for party in [
            PartyId::User(record.user_id),
            PartyId::Associate(record.associate_id),
        ] {
            self.shared
                .by_party
                .remove_if(&party, |_, o| *o == record.order_id);
            self.mirror_untracked(party, record.order_id);
        }
        if let Some(peers) = self.shared.dispatch.peers() {
            peers.unserve(crate::peers::Served::Order(record.order_id));
        }
    }

    /// Rebuilds the actors of the open orders whose pickup shard `wanted` accepts (and
    /// that do not run here yet), marks their associates busy (unless the order only
    /// owes a cancellation fee), and settles their payments left pending.
    fn recover(&self, wanted: impl Fn(geo::ShardId) -> bool) -> Result<Recovered, ActorError> {
        let records = self.open_orders_in(wanted)?;
        self.adopt(records)
    }

    /// The stored open orders whose pickup shard `wanted` accepts and that do not run
    /// here.
    fn open_orders_in(
        &self,
        wanted: impl Fn(geo::ShardId) -> bool,
    ) -> Result<Vec<storage::OrderRecord>, ActorError> {
        Ok(self
            .shared
            .store
            .open_orders()?
            .into_iter()
            .filter(|r| {
                !self.shared.actors.contains_key(&r.order_id)
                    && self.shard_of(r).is_none_or(&wanted)
            })
            .collect())
    }

    /// Cluster mode: takes over the open orders of gained cells, each stamped with this
    /// node's epoch first, so the former owner's late writes are refused from then on.
    async fn take_over_orders(&self, shards: &[geo::ShardId]) -> Result<Recovered, ActorError> {
        let mut fenced = Vec::new();
        for record in self.open_orders_in(|s| shards.contains(&s))? {
            let stamped = self
                .store_for(&record)
                .and_then(|store| Ok(store.fence_order(record.order_id)?));
            match stamped {
                Ok(ticket) => match ticket.durable().await {
                    Ok(()) => fenced.push(record),
                    Err(e) => {
                        tracing::warn!(order = %record.order_id, error = %e, "not taking over an order")
                    }
                },
                Err(e) => {
                    tracing::warn!(order = %record.order_id, error = %e, "not taking over an order")
                }
            }
        }
        self.adopt(fenced)
    }

    /// Rebuilds the actors of `records`, marks their associates busy (unless the order
    /// only owes a cancellation fee), and settles their payments left pending (every
    /// pending payment on a single node).
    fn adopt(&self, records: Vec<storage::OrderRecord>) -> Result<Recovered, ActorError> {
        let store = &self.shared.store;
        let mut recovered = Recovered::default();
        let mut taken = std::collections::HashSet::new();
        for record in records {
            if self.shared.actors.contains_key(&record.order_id) {
                continue;
            }
            taken.insert(record.order_id);
            recovered.open_orders += 1;
            if record.owes_fee() {
                recovered.owing_fee += 1;
            } else {
                let info = match store.associate(record.associate_id)? {
                    Some(profile) => {
                        crate::dispatch::profile_info(&profile, self.shared.dispatch.catalog())
                    }
                    None => AssociateProfileInfo::default(),
                };
                self.shared
                    .dispatch
                    .restore_busy(record.associate_id, record.order_id, info);
            }
            // Its invoice, payments and events are read here, not on an actor's thread.
            let actor = OrderActor::new(record.clone(), self.clone());
            let addr = self.shared.dispatch.spawn(move || actor);
            self.register(&record, addr);
        }
        for payment in store.pending_payments()? {
            if self.shared.dispatch.peers().is_some() && !taken.contains(&payment.order_id) {
                continue;
            }
            recovered.pending_payments += 1;
            self.payments().do_send(Recover { payment });
        }
        Ok(recovered)
    }

    pub(crate) fn billing(&self) -> &Addr<BillingActor> {
        // expect: start() sets every actor before the handle is shared.
        self.shared.billing.get().expect("started")
    }

    pub(crate) fn payments(&self) -> &Addr<PaymentActor> {
        // expect: start() sets every actor before the handle is shared.
        self.shared.payments.get().expect("started")
    }

    fn feedback(&self) -> &Addr<FeedbackActor> {
        // expect: start() sets every actor before the handle is shared.
        self.shared.feedback.get().expect("started")
    }

    /// The event bus.
    pub fn bus(&self) -> &EventBus {
        &self.shared.bus
    }

    /// Publishes a durable order event.
    pub(crate) fn publish(&self, feed_seq: u64, event: wire::model::OrderEvent) {
        self.shared.bus.publish(feed_seq, event);
    }

    /// Hands billing's invoice to the order's actor.
    pub(crate) fn invoiced(
        &self,
        order: OrderId,
        invoice: wire::model::Invoice,
        tax: storage::TaxInvoice,
    ) {
        if let Some(addr) = self.shared.actors.get(&order) {
            addr.do_send(messages::Invoiced { invoice, tax });
        }
    }

    /// Hands a payment's late outcome to the order's actor (or just stores it).
    pub(crate) fn payment_settled(&self, payment: storage::PaymentRecord) {
        match self.shared.actors.get(&payment.order_id) {
            Some(addr) => addr.do_send(messages::Settled { payment }),
            None => {
                if let Err(e) = self.shared.store.put_payment(&payment) {
                    tracing::error!(payment = %payment.payment_id, error = %e, "could not store a payment outcome");
                }
            }
        }
    }

    /// In cluster mode, the node running `order`'s actor when it is not this one.
    fn remote(&self, order: OrderId) -> Option<&crate::peers::Peers> {
        if self.shared.actors.contains_key(&order) {
            return None;
        }
        self.shared.dispatch.peers()
    }

    /// Asks the node running `order`'s actor; an order no node runs has ended.
    async fn ask_remote(
        &self,
        peers: &crate::peers::Peers,
        party: PartyId,
        order: OrderId,
        ask: OrderAsk,
    ) -> Result<Option<OrderSnapshot>, ActorError> {
        let asked = peers.call::<crate::peers::messages::OrderReply>(
            crate::peers::subjects::order(order),
            &ToOrder { party, ask },
        );
        match asked.await {
            Ok(reply) => reply,
            Err(crate::peers::PeerError::NoResponders(_)) => Err(self.unserved(party, order)),
            Err(e) => Err(e.into()),
        }
    }

    /// The error for an order no node serves: ended, or (still open) between its old
    /// owner and its new one, so the app should try again.
    fn unserved(&self, party: PartyId, order: OrderId) -> ActorError {
        match self.shared.store.order(order) {
            Ok(Some(o)) if side_of(&o, party).is_some() && still_on(&o, party) => {
                ActorError::PeerUnavailable(format!("order {order} is changing nodes"))
            }
            _ => self.ended(party, order),
        }
    }

    /// The user pays their order's invoice, wherever the order runs.
    pub async fn pay(&self, party: PartyId, frame: wire::Pay) -> Result<(), ActorError> {
        match self.remote(frame.order_id) {
            Some(peers) => {
                // A payment waits on the gateway as well as on the order's node.
                let asked = peers.call_within::<crate::peers::messages::OrderReply>(
                    crate::peers::subjects::order(frame.order_id),
                    &ToOrder {
                        party,
                        ask: OrderAsk::Pay(frame.clone()),
                    },
                    peers.call_timeout() + self.shared.gateway_timeout,
                );
                match asked.await {
                    Ok(reply) => reply.map(|_| ()),
                    // Ended everywhere: a retry with a used key gets its stored outcome.
                    Err(crate::peers::PeerError::NoResponders(_)) => {
                        match self.unserved(party, frame.order_id) {
                            e @ ActorError::PeerUnavailable(_) => Err(e),
                            _ => self.pay_ended(party, &frame),
                        }
                    }
                    Err(e) => Err(e.into()),
                }
            }
            None => self.pay_here(party, frame).await,
        }
    }

    /// The user pays their order's invoice, on this node. Once the order has ended, a
    /// retry with a used key gets the stored outcome again.
    pub(crate) async fn pay_here(
        &self,
        party: PartyId,
        frame: wire::Pay,
    ) -> Result<(), ActorError> {
        let Ok(actor) = self.actor(frame.order_id) else {
            return self.pay_ended(party, &frame);
        };
        let pay = messages::Pay {
            party,
            method: frame.method,
            instrument: frame.instrument.clone(),
            idempotency_key: frame.idempotency_key.clone(),
            tip_minor: frame.tip_minor.unwrap_or(0),
        };
        match actor.send(pay).await {
            Ok(result) => result,
            // The order ended between the lookup and the message.
            Err(_) => self.pay_ended(party, &frame),
        }
    }

    /// Answers a payment attempt on an order that has no actor any more (it ended) from
    /// storage: a used key gets its stored outcome again.
    fn pay_ended(&self, party: PartyId, frame: &wire::Pay) -> Result<(), ActorError> {
        let PartyId::User(user) = party else {
            return Err(ActorError::NotYourOrder);
        };
        let stored = self
            .shared
            .store
            .payment_by_key(user, &frame.idempotency_key)?;
        match stored.filter(|p| p.order_id == frame.order_id) {
            Some(payment) => {
                let outcome = order::outcome_of(&payment);
                self.sessions().to_user(
                    user,
                    wire::PaymentResult {
                        payment: Box::new(outcome),
                    },
                );
                Ok(())
            }
            None => Err(self.ended(party, frame.order_id)),
        }
    }

    /// The error for acting on an order that has no actor: `invalid_state` if it is the
    /// party's and has ended, `not_your_order` otherwise.
    fn ended(&self, party: PartyId, order: OrderId) -> ActorError {
        match self.shared.store.order(order) {
            Ok(Some(o)) if side_of(&o, party).is_some() => {
                ActorError::InvalidState(format!("the order is {}", o.state.as_str()))
            }
            Ok(_) => ActorError::NotYourOrder,
            Err(e) => e.into(),
        }
    }

    /// The actor of an open order, or the error for acting on it.
    fn open_actor(&self, party: PartyId, order: OrderId) -> Result<Addr<OrderActor>, ActorError> {
        self.actor(order).map_err(|_| self.ended(party, order))
    }

    /// The associate confirms cash, wherever the order runs.
    pub async fn cash_received(
        &self,
        party: PartyId,
        frame: wire::CashReceived,
    ) -> Result<(), ActorError> {
        match self.remote(frame.order_id) {
            Some(peers) => {
                let order = frame.order_id;
                self.ask_remote(peers, party, order, OrderAsk::Cash(frame))
                    .await
                    .map(|_| ())
            }
            None => self.cash_here(party, frame).await,
        }
    }

    /// The associate confirms cash, on this node.
    pub(crate) async fn cash_here(
        &self,
        party: PartyId,
        frame: wire::CashReceived,
    ) -> Result<(), ActorError> {
        let cash = messages::CashReceived {
            party,
            amount_minor: frame.amount_minor,
        };
        match self.open_actor(party, frame.order_id)?.send(cash).await {
            Ok(result) => result,
            Err(_) => Err(self.ended(party, frame.order_id)),
        }
    }

    /// A party rates the other side of a closed order.
    pub async fn rate(&self, party: PartyId, frame: wire::Feedback) -> Result<(), ActorError> {
        let rate = messages::Rate {
            party,
            order_id: frame.order_id,
            rating: frame.rating,
            comment: frame.comment,
        };
        self.feedback().send(rate).await?
    }

    /// Feedback from elsewhere about a party of a closed order (once per source).
    pub async fn external_feedback(
        &self,
        external: messages::External,
    ) -> Result<messages::ExternalOutcome, ActorError> {
        self.feedback().send(external).await?
    }

    /// Ops cancel or complete an open order by hand, with a reason kept in its events.
    pub async fn ops(
        &self,
        order: OrderId,
        action: messages::OpsAction,
        reason: String,
    ) -> Result<(), ActorError> {
        match self
            .actor(order)?
            .send(messages::OpsAct { action, reason })
            .await
        {
            Ok(result) => result,
            Err(_) => Err(ActorError::InvalidState("the order has ended".into())),
        }
    }

    /// The store.
    pub fn store(&self) -> &storage::Store {
        &self.shared.store
    }

    pub(crate) fn sessions(&self) -> &Sessions {
        self.shared.dispatch.sessions()
    }

    pub(crate) fn dispatch(&self) -> &Dispatch {
        &self.shared.dispatch
    }

    /// Registers a running order actor and its parties (only the user, for an order
    /// that just owes a cancellation fee).
    pub(crate) fn register(&self, record: &storage::OrderRecord, addr: Addr<OrderActor>) {
        let user = PartyId::User(record.user_id);
        let associate = PartyId::Associate(record.associate_id);
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
            crate::peers::serve::serve_order(peers, self, record.order_id);
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
    fn tell(&self, party: PartyId, msg: ToParty) {
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

    /// Open orders run here, where their parties are, and recent tracks.
    pub fn board(&self) -> &super::board::Board {
        &self.shared.board
    }

    /// How many orders are open.
    pub fn open_orders(&self) -> usize {
        self.shared.actors.len()
    }

    fn actor(&self, order: OrderId) -> Result<Addr<OrderActor>, ActorError> {
        self.shared
            .actors
            .get(&order)
            .map(|a| a.clone())
            .ok_or(ActorError::NotYourOrder)
    }

    /// `party` acts on `order`, wherever it runs.
    pub async fn act(
        &self,
        party: PartyId,
        order: OrderId,
        action: Action,
    ) -> Result<(), ActorError> {
        match self.remote(order) {
            Some(peers) => self
                .ask_remote(peers, party, order, OrderAsk::Act(action))
                .await
                .map(|_| ()),
            None => self.act_here(party, order, action).await,
        }
    }

    /// `party` acts on `order`, on this node.
    pub(crate) async fn act_here(
        &self,
        party: PartyId,
        order: OrderId,
        action: Action,
    ) -> Result<(), ActorError> {
        match self
            .open_actor(party, order)?
            .send(messages::Act { party, action })
            .await
        {
            Ok(result) => result,
            // The order ended between the lookup and the message.
            Err(_) => Err(self.ended(party, order)),
        }
    }

    /// The order as `party` may see it, wherever it runs.
    pub async fn snapshot(
        &self,
        party: PartyId,
        order: OrderId,
    ) -> Result<OrderSnapshot, ActorError> {
        match self.remote(order) {
            Some(peers) => self
                .ask_remote(peers, party, order, OrderAsk::View)
                .await?
                .ok_or_else(|| ActorError::Internal("an order view came back empty".into())),
            None => self.snapshot_here(party, order).await,
        }
    }

    /// The order as `party` may see it, on this node.
    pub(crate) async fn snapshot_here(
        &self,
        party: PartyId,
        order: OrderId,
    ) -> Result<OrderSnapshot, ActorError> {
        match self.actor(order)?.send(messages::View { party }).await {
            Ok(result) => result,
            Err(_) => Err(ActorError::InvalidState("the order has ended".into())),
        }
    }

    /// Relays `party`'s position to the other side of their order, at most once per
    /// tracking interval; true if relayed.
    pub fn relay_location(&self, party: PartyId, point: LatLng) -> bool {
        let Some(track) = self.shared.tracking.get(&party).map(|t| *t) else {
            return false;
        };
        let now = Instant::now();
        let interval = self.shared.config.tracking_interval;
        let due = match self.shared.last_relay.get(&party) {
            Some(last) => now.duration_since(*last) >= interval,
            None => true,
        };
        if !due {
            return false;
        }
        self.shared.last_relay.insert(party, now);
        let at_ms = self.shared.dispatch.now_ms();
        let side = match party {
            PartyId::User(_) => Role::User,
            PartyId::Associate(_) => Role::Associate,
        };
        self.shared
            .board
            .moved(track.order, side, point.lat(), point.lng(), at_ms);
        let frame = PeerLocation {
            order_id: track.order,
            point: point.into(),
            at_ms,
        };
        self.sessions().send(track.peer, frame.into()).is_ok()
    }
}

/// Which side of an order a party is on, if any.
pub(crate) fn side_of(record: &storage::OrderRecord, party: PartyId) -> Option<Role> {
    match party {
        PartyId::User(u) if u == record.user_id => Some(Role::User),
        PartyId::Associate(a) if a == record.associate_id => Some(Role::Associate),
        _ => None,
    }
}

/// Whether `party` is still on the stored order: it is open, and (for its associate)
/// does not only owe a cancellation fee.
fn still_on(record: &storage::OrderRecord, party: PartyId) -> bool {
    use wire::model::OrderState as S;
    match record.state {
        S::Closed => false,
        S::Cancelled => record.owes_fee() && matches!(party, PartyId::User(_)),
        _ => true,
    }
}

/// The open order `party` is on, read from the store (cluster mode: it may run on any
/// node).
pub(crate) fn open_order_in_store(
    store: &storage::Store,
    party: PartyId,
) -> Result<Option<storage::OrderRecord>, ActorError> {
    Ok(store
        .open_orders_of(party)?
        .into_iter()
        .find(|o| still_on(o, party)))
}
