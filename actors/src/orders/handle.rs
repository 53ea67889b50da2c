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

use crate::dispatch::Dispatch;
use crate::error::ActorError;
use crate::orders::billing::BillingActor;
use crate::orders::bus::EventBus;
use crate::orders::desk::OrderDesk;
use crate::orders::feedback::FeedbackActor;
use crate::orders::gateway::PaymentGateway;
use crate::orders::messages;
use crate::orders::messages::Action;
use crate::orders::order::{self, OrderActor};
use crate::orders::payment::{PaymentActor, PaymentConfig};
use crate::orders::stall::StallTimes;
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
pub(super) struct Track {
    pub(super) order: OrderId,
    pub(super) peer: PartyId,
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
    pub(in crate::orders) shared: Arc<Shared>,
}

impl std::fmt::Debug for Orders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orders")
            .field("open", &self.shared.actors.len())
            .finish()
    }
}

/// What the orders handle and its actors share.
pub(in crate::orders) struct Shared {
    pub(in crate::orders) store: storage::Store,
    pub(in crate::orders) dispatch: Dispatch,
    pub(in crate::orders) config: OrderConfig,
    pub(in crate::orders) actors: DashMap<OrderId, Addr<OrderActor>>,
    /// Each party's open order (one per party).
    pub(in crate::orders) by_party: DashMap<PartyId, OrderId>,
    /// Parties whose positions are relayed to the other side.
    pub(in crate::orders) tracking: DashMap<PartyId, Track>,
    pub(in crate::orders) last_relay: DashMap<PartyId, Instant>,
    /// Open orders and recent tracks, for ops.
    pub(in crate::orders) board: super::board::Board,
    pub(in crate::orders) bus: EventBus,
    /// How long a payment may wait on the gateway.
    pub(in crate::orders) gateway_timeout: Duration,
    pub(in crate::orders) billing: OnceLock<Addr<BillingActor>>,
    pub(in crate::orders) payments: OnceLock<Addr<PaymentActor>>,
    pub(in crate::orders) feedback: OnceLock<Addr<FeedbackActor>>,
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

    /// The user pays their order's invoice, wherever the order runs. Once the order has
    /// ended, a retry with a used key gets the stored outcome again.
    pub async fn pay(&self, party: PartyId, frame: wire::Pay) -> Result<(), ActorError> {
        let pay = messages::Pay {
            party,
            method: frame.method,
            instrument: frame.instrument.clone(),
            idempotency_key: frame.idempotency_key.clone(),
            tip_minor: frame.tip_minor.unwrap_or(0),
        };
        // A payment waits on the gateway as well as on the order's node.
        match self
            .ask_order(frame.order_id, pay, self.shared.gateway_timeout)
            .await?
        {
            Some(result) => result,
            None => match self.unserved(party, frame.order_id) {
                e @ ActorError::PeerUnavailable(_) => Err(e),
                _ => self.pay_ended(party, &frame),
            },
        }
    }

    /// Answers a payment attempt on an order that has no actor any more (it ended) from
    /// storage: a used key gets its stored outcome again.
    pub(super) fn pay_ended(&self, party: PartyId, frame: &wire::Pay) -> Result<(), ActorError> {
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
    pub(super) fn ended(&self, party: PartyId, order: OrderId) -> ActorError {
        match self.shared.store.order(order) {
            Ok(Some(o)) if side_of(&o, party).is_some() => {
                ActorError::InvalidState(format!("the order is {}", o.state.as_str()))
            }
            Ok(_) => ActorError::NotYourOrder,
            Err(e) => e.into(),
        }
    }

    /// The associate confirms cash, wherever the order runs.
    pub async fn cash_received(
        &self,
        party: PartyId,
        frame: wire::CashReceived,
    ) -> Result<(), ActorError> {
        let cash = messages::CashReceived {
            party,
            amount_minor: frame.amount_minor,
        };
        match self.ask_order(frame.order_id, cash, Duration::ZERO).await? {
            Some(result) => result,
            None => Err(self.unserved(party, frame.order_id)),
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

    /// The order settings.
    pub(crate) fn config(&self) -> &OrderConfig {
        &self.shared.config
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

    /// Open orders run here, where their parties are, and recent tracks.
    pub fn board(&self) -> &super::board::Board {
        &self.shared.board
    }

    /// How many orders are open.
    pub fn open_orders(&self) -> usize {
        self.shared.actors.len()
    }

    pub(super) fn actor(&self, order: OrderId) -> Result<Addr<OrderActor>, ActorError> {
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
        let act = messages::Act { party, action };
        match self.ask_order(order, act, Duration::ZERO).await? {
            Some(result) => result,
            None => Err(self.unserved(party, order)),
        }
    }

    /// The order as `party` may see it, wherever it runs.
    pub async fn snapshot(
        &self,
        party: PartyId,
        order: OrderId,
    ) -> Result<OrderSnapshot, ActorError> {
        let view = messages::View { party };
        match self.ask_order(order, view, Duration::ZERO).await? {
            Some(result) => result,
            None if self.shared.dispatch.peers().is_none() => Err(ActorError::NotYourOrder),
            None => Err(self.unserved(party, order)),
        }
    }

    /// The open order `party` is on, as they may see it, for an app that (re)connects:
    /// from its actor wherever it runs, or, while no node can answer for it (its owner
    /// died and the cell is being taken over, or the owner is slow), from the store,
    /// which holds every transition before anyone hears of it. Cluster mode only falls
    /// back; on one node the actor is the only source.
    pub async fn resync_view(
        &self,
        party: PartyId,
        order: OrderId,
    ) -> Result<OrderSnapshot, ActorError> {
        let live = self.snapshot(party, order).await;
        let unreachable = matches!(
            live,
            Err(ActorError::PeerUnavailable(_) | ActorError::Internal(_))
        );
        if !unreachable || self.shared.dispatch.peers().is_none() {
            return live;
        }
        let Some(record) = self.shared.store.order_async(order).await? else {
            return live;
        };
        let Some(side) = side_of(&record, party) else {
            return Err(ActorError::NotYourOrder);
        };
        if !still_on(&record, party) {
            return live;
        }
        let invoice = match record.invoice_id {
            Some(id) => self.shared.store.invoice_async(id).await?,
            None => None,
        };
        metrics::counter!(crate::telemetry::ORDER_VIEWS_FROM_STORE).increment(1);
        Ok(OrderActor::view_for(&record, invoice, side))
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
pub(super) fn still_on(record: &storage::OrderRecord, party: PartyId) -> bool {
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
