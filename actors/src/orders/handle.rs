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
    bus: EventBus,
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
        let recovered = orders.recover()?;
        Ok((orders, recovered))
    }

    /// Rebuilds the actors of every open order, marks their associates busy (unless the
    /// order only owes a cancellation fee), and settles payments left pending.
    fn recover(&self) -> Result<Recovered, ActorError> {
        let store = &self.shared.store;
        let mut recovered = Recovered::default();
        for record in store.open_orders()? {
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
            let orders = self.clone();
            let actor_record = record.clone();
            let addr = self
                .shared
                .dispatch
                .spawn(move || OrderActor::new(actor_record, orders));
            self.register(&record, addr);
        }
        for payment in store.pending_payments()? {
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

    /// The user pays their order's invoice. Once the order has ended, a retry with a used
    /// key gets the stored outcome again.
    pub async fn pay(&self, party: PartyId, frame: wire::Pay) -> Result<(), ActorError> {
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

    /// The associate confirms cash.
    pub async fn cash_received(
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
        metrics::gauge!(crate::telemetry::ORDER_ACTORS).set(self.shared.actors.len() as f64);
        self.shared.by_party.insert(user, record.order_id);
        if record.owes_fee() {
            return;
        }
        self.shared.by_party.insert(associate, record.order_id);
        if !record.state.is_terminal() && record.state < wire::model::OrderState::Completed {
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
            self.shared
                .tracking
                .remove_if(&party, |_, t| t.order == record.order_id);
            self.shared.last_relay.remove(&party);
        }
    }

    /// The associate is no longer on the order (it owes only a fee, or only the user's
    /// payment is missing): they may take other work.
    pub(crate) fn associate_off(&self, record: &storage::OrderRecord) {
        self.stop_tracking(record);
        self.shared
            .by_party
            .remove_if(&PartyId::Associate(record.associate_id), |_, o| {
                *o == record.order_id
            });
    }

    /// Forgets a finished order.
    pub(crate) fn unregister(&self, record: &storage::OrderRecord) {
        self.stop_tracking(record);
        self.shared.actors.remove(&record.order_id);
        metrics::gauge!(crate::telemetry::ORDER_ACTORS).set(self.shared.actors.len() as f64);
        for party in [
            PartyId::User(record.user_id),
            PartyId::Associate(record.associate_id),
        ] {
            self.shared
                .by_party
                .remove_if(&party, |_, o| *o == record.order_id);
        }
    }

    /// The party's open order, if any.
    pub fn open_order_of(&self, party: PartyId) -> Option<OrderId> {
        self.shared.by_party.get(&party).map(|o| *o)
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

    /// `party` acts on `order`.
    pub async fn act(
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

    /// The order as `party` may see it.
    pub async fn snapshot(
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
        let frame = PeerLocation {
            order_id: track.order,
            point: point.into(),
            at_ms: self.shared.dispatch.now_ms(),
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
