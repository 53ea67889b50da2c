//! The order actor: one per open order. Moves the order along its lifecycle, persisting
//! each transition with its event before telling either party, checks the start PIN,
//! prices cancellations, and frees the associate when the order ends. Paying lives in
//! [`payments`].

use std::time::Duration;

use actix::prelude::*;
use rand::Rng;
use tokio::time::Instant;
use wire::model::{
    Invoice, OrderEvent, OrderEventKind, OrderSnapshot, OrderState, PaymentOutcome, PaymentStatus,
    Role,
};
use wire::{OrderClosed, OrderUpdate, PartyId, PaymentId, PaymentResult};

use crate::error::ActorError;
use crate::orders::board::BoardOrder;
use crate::orders::messages::{Act, Action, OpsAct, OpsAction, View};
use crate::orders::stall::StallAction;
use crate::orders::{Orders, side_of};

mod billing;
mod payments;

pub(crate) use payments::outcome_of;

/// A fresh 4-digit start PIN.
pub fn new_pin() -> String {
    format!("{:04}", rand::rng().random_range(0..10_000))
}

/// One open order.
pub struct OrderActor {
    record: storage::OrderRecord,
    orders: Orders,
    wrong_pins: u32,
    locked_until: Option<Instant>,
    /// The invoice, once billed.
    invoice: Option<Invoice>,
    /// The gateway payment under way, if any.
    charging: Option<PaymentId>,
    /// A billing request is out (recovery path).
    billing: bool,
    /// The successful payment being recorded, reported once the order is paid.
    settling: Option<PaymentOutcome>,
    /// When the order entered its current state.
    state_since: Instant,
    /// Bumped at every change of state, so a stall check of an earlier state is void.
    progress: u64,
    /// The current state has stalled (counted in the stalled gauge).
    stalled: bool,
}

impl OrderActor {
    /// The actor for an order just created (allotted): nothing to read back, since it
    /// has no invoice, no payment and one event, now.
    pub fn allotted(record: storage::OrderRecord, orders: Orders) -> Self {
        Self::with(record, orders, None, None, Instant::now())
    }

    /// The actor for an order already on disk, from what the store has of it (read on
    /// the caller's thread: recovery and take-over, not an actor's).
    pub fn new(record: storage::OrderRecord, orders: Orders) -> Self {
        let invoice = record
            .invoice_id
            .and_then(|id| orders.store().invoice(id).ok().flatten());
        // A payment left pending (by a restart) still guards against a second one.
        let charging = match orders.store().payments_for(record.order_id) {
            Ok(payments) => payments
                .into_iter()
                .find(|p| p.status == PaymentStatus::Pending)
                .map(|p| p.payment_id),
            Err(e) => {
                tracing::error!(order = %record.order_id, error = %e, "could not read the order's payments");
                None
            }
        };
        // The current state began at its last event that was progress (not a stall).
        let state_since = match orders.store().events(record.order_id) {
            Ok(events) => events
                .iter()
                .rev()
                .find(|e| !matches!(e.kind, OrderEventKind::Stalled { .. }))
                .map_or_else(Instant::now, |e| {
                    orders.dispatch().clock().instant_at(e.at_ms)
                }),
            Err(_) => Instant::now(),
        };
        Self::with(record, orders, invoice, charging, state_since)
    }

    fn with(
        record: storage::OrderRecord,
        orders: Orders,
        invoice: Option<Invoice>,
        charging: Option<PaymentId>,
        state_since: Instant,
    ) -> Self {
        Self {
            record,
            orders,
            wrong_pins: 0,
            locked_until: None,
            invoice,
            charging,
            billing: false,
            settling: None,
            state_since,
            progress: 0,
            stalled: false,
        }
    }

    /// The order as the associate sees it (no PIN), with `invoice` if billed.
    pub(crate) fn view_of(r: &storage::OrderRecord, invoice: Option<Invoice>) -> OrderSnapshot {
        OrderSnapshot {
            order_id: r.order_id,
            request_id: r.request_id,
            state: r.state,
            task: r.task.clone(),
            pickup: r.pickup.into(),
            note: r.note.clone(),
            user: r.user.clone(),
            associate: r.associate.clone(),
            pin: None,
            discount_code: r.discount_code.clone(),
            allotted_at_ms: r.allotted_at_ms,
            started_at_ms: r.started_at_ms,
            completed_at_ms: r.completed_at_ms,
            invoice,
            cancellation: r.cancellation.clone(),
        }
    }

    /// The order as `side` sees it: the PIN only in the user's copy.
    pub(crate) fn snapshot_for(&self, side: Role) -> OrderSnapshot {
        Self::view_for(&self.record, self.invoice.clone(), side)
    }

    /// `r` with `invoice` as `side` sees it: the PIN only in the user's copy.
    pub(crate) fn view_for(
        r: &storage::OrderRecord,
        invoice: Option<Invoice>,
        side: Role,
    ) -> OrderSnapshot {
        let mut view = Self::view_of(r, invoice);
        if side == Role::User {
            view.pin = Some(r.pin.clone());
        }
        view
    }

    fn parties(&self) -> [PartyId; 2] {
        [
            PartyId::User(self.record.user_id),
            PartyId::Associate(self.record.associate_id),
        ]
    }

    /// The event a party's action becomes (with what is written beside it), after the
    /// checks only this actor can make.
    fn event_for(
        &mut self,
        side: Role,
        action: Action,
    ) -> Result<(OrderEventKind, Vec<storage::SideWrite>), ActorError> {
        let associate_only = |what: &str| {
            if side == Role::Associate {
                Ok(())
            } else {
                Err(ActorError::InvalidState(format!(
                    "only the associate marks {what}"
                )))
            }
        };
        let kind = match action {
            Action::EnRoute => {
                associate_only("en route")?;
                OrderEventKind::EnRoute
            }
            Action::Arrived => {
                associate_only("arrival")?;
                OrderEventKind::Arrived
            }
            Action::Start { pin } => {
                associate_only("the start")?;
                self.check_pin(&pin)?;
                OrderEventKind::Started
            }
            Action::Complete => OrderEventKind::Completed {
                minutes: self.billable_minutes()?,
            },
            Action::Cancel { reason } => {
                if !self.record.state.can_move_to(OrderState::Cancelled) {
                    return Err(ActorError::InvalidState(format!(
                        "the order is {} and cannot be cancelled",
                        self.record.state.as_str()
                    )));
                }
                let fee_minor = self.cancellation_fee();
                let (invoice_id, side_writes) = if fee_minor > 0 {
                    let (id, writes) = self.fee_invoice(fee_minor)?;
                    (Some(id), writes)
                } else {
                    (None, Vec::new())
                };
                return Ok((
                    OrderEventKind::Cancelled {
                        by: side,
                        reason,
                        fee_minor,
                        invoice_id,
                    },
                    side_writes,
                ));
            }
        };
        Ok((kind, Vec::new()))
    }

    fn check_pin(&mut self, pin: &str) -> Result<(), ActorError> {
        let now = Instant::now();
        if let Some(until) = self.locked_until {
            if now < until {
                return Err(ActorError::PinLocked(
                    until.duration_since(now).as_secs().max(1),
                ));
            }
            self.locked_until = None;
        }
        if pin == self.record.pin {
            self.wrong_pins = 0;
            return Ok(());
        }
        self.wrong_pins += 1;
        let config = self.orders.config();
        if self.wrong_pins >= config.pin_attempts {
            self.wrong_pins = 0;
            self.locked_until = Some(now + config.pin_lock);
            return Err(ActorError::PinLocked(config.pin_lock.as_secs()));
        }
        Err(ActorError::WrongPin)
    }

    /// Persists `kind` (with `side` writes), then tells both parties and runs what the new
    /// state sets off. Callers block the mailbox on it (an atomic response or
    /// `ctx.wait`), so nothing else changes the order until the write is durable.
    pub(crate) fn commit(
        &mut self,
        by: Option<Role>,
        kind: OrderEventKind,
        side: Vec<storage::SideWrite>,
    ) -> ResponseActFuture<Self, Result<(), ActorError>> {
        let now = self.orders.dispatch().now_ms();
        // The invoice written with the event becomes the order's once it is durable.
        let invoice = side.iter().find_map(|w| match w {
            storage::SideWrite::Invoice(i) => Some(i.clone()),
            _ => None,
        });
        let store = match self.orders.store_for(&self.record) {
            Ok(store) => store,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let write = store.transition_durable(self.record.order_id, now, kind, side);
        Box::pin(write.into_actor(self).map(move |committed, act, ctx| {
            let storage::Committed {
                order,
                event,
                feed_seq,
                ..
            } = committed?;
            let moved = order.state != act.record.state;
            act.record = order;
            if invoice.is_some() {
                act.invoice = invoice;
            }
            if moved {
                act.moved_on(ctx);
            }
            act.post_on_board();
            // A stall is for ops: the parties' view of the order did not change.
            if !matches!(event.kind, OrderEventKind::Stalled { .. }) {
                for party in act.parties() {
                    let update = OrderUpdate {
                        order_id: event.order_id,
                        state: event.state,
                        at_ms: event.at_ms,
                        by,
                    };
                    act.orders.sessions().send(party, update.into()).ok();
                }
                act.after(&event, ctx);
            }
            act.orders.publish(feed_seq, event);
            Ok(())
        }))
    }

    /// Commits from inside the actor (not as a reply), holding the mailbox until durable.
    fn commit_now(
        &mut self,
        kind: OrderEventKind,
        side: Vec<storage::SideWrite>,
        ctx: &mut Context<Self>,
    ) {
        let order = self.record.order_id;
        let write = self.commit(None, kind, side).map(move |done, _, _| {
            if let Err(e) = done {
                tracing::error!(%order, error = %e, "order transition failed");
            }
        });
        ctx.wait(write);
    }

    /// What a durable event sets off.
    fn after(&mut self, event: &OrderEvent, ctx: &mut Context<Self>) {
        if let OrderEventKind::FeePaid { .. } = event.kind {
            self.report_settled();
            self.finish(ctx);
            return;
        }
        match event.state {
            OrderState::Completed => {
                self.orders.stop_tracking(&self.record);
                // Billing hears of the completion on the bus; should the invoice not
                // arrive (billing failed, or restarted), ask again directly.
                ctx.run_later(BILLING_RETRY, |act, ctx| act.bill(ctx));
            }
            OrderState::Billed => self.send_invoice(&self.parties()),
            OrderState::Paid => {
                self.report_settled();
                self.commit_now(OrderEventKind::Closed, Vec::new(), ctx);
            }
            OrderState::Closed => {
                if let Some(invoice) = &self.invoice {
                    for party in self.parties() {
                        let frame = OrderClosed {
                            order_id: self.record.order_id,
                            invoice: Box::new(invoice.clone()),
                        };
                        self.orders.sessions().send(party, frame.into()).ok();
                    }
                }
                self.finish(ctx);
            }
            OrderState::Cancelled if self.record.owes_fee() => {
                // The associate is free at once; the order stays open for the user
                // until the fee is paid.
                self.orders
                    .dispatch()
                    .order_finished(self.record.associate_id, self.record.order_id);
                self.orders.associate_off(&self.record);
                self.send_invoice(&[PartyId::User(self.record.user_id)]);
            }
            OrderState::Cancelled => self.finish(ctx),
            _ => {}
        }
    }

    /// The order reached a new state: a stall of the last one is over, and the new one
    /// is watched.
    fn moved_on(&mut self, ctx: &mut Context<Self>) {
        self.state_since = Instant::now();
        self.progress += 1;
        if std::mem::take(&mut self.stalled) {
            metrics::gauge!(crate::telemetry::ORDERS_STALLED).decrement(1.0);
        }
        self.watch_stall(ctx);
    }

    /// Shows the order as it is now on the ops board.
    fn post_on_board(&self) {
        let now_ms = self.orders.dispatch().now_ms();
        let since_ms = now_ms.saturating_sub(self.state_since.elapsed().as_millis() as u64);
        self.orders
            .board()
            .upsert(board_entry(&self.record, since_ms, self.stalled));
    }

    /// Checks for a stall when the current state's stall time is up.
    fn watch_stall(&mut self, ctx: &mut Context<Self>) {
        let stall = &self.orders.config().stall;
        let Some(limit) = stall.of(self.record.state, self.record.owes_fee()) else {
            return;
        };
        let progress = self.progress;
        let due = (self.state_since + limit).saturating_duration_since(Instant::now());
        ctx.run_later(due, move |act, ctx| act.check_stall(progress, ctx));
    }

    /// Records and counts a stall, and does what the stall policy says.
    fn check_stall(&mut self, progress: u64, ctx: &mut Context<Self>) {
        if progress != self.progress || self.stalled {
            return;
        }
        let state = self.record.state;
        if self.record.state.is_terminal() && !self.record.owes_fee() {
            return;
        }
        self.stalled = true;
        metrics::gauge!(crate::telemetry::ORDERS_STALLED).increment(1.0);
        metrics::counter!(crate::telemetry::ORDERS_STALLED_TOTAL, "state" => state.as_str())
            .increment(1);
        let connected = self
            .orders
            .sessions()
            .is_connected(PartyId::Associate(self.record.associate_id));
        let action = crate::orders::stall::action(state, connected);
        let idle_ms = self.state_since.elapsed().as_millis() as u64;
        tracing::warn!(order = %self.record.order_id, state = state.as_str(), idle_ms, ?action, "order stalled");
        let kind = OrderEventKind::Stalled {
            state,
            idle_ms,
            action: action.describe().map(str::to_owned),
        };
        let order = self.record.order_id;
        let write = self
            .commit(None, kind, Vec::new())
            .map(move |done, act, ctx| {
                if let Err(e) = done {
                    tracing::error!(%order, error = %e, "could not record a stall");
                    return;
                }
                match action {
                    StallAction::Alert => {}
                    StallAction::CancelAssociateAway => {
                        let reason = format!(
                            "no progress for {} min while {} and the associate's app away",
                            idle_ms / 60_000,
                            state.as_str()
                        );
                        act.commit_now(OrderEventKind::OpsCancelled { reason }, Vec::new(), ctx);
                    }
                    StallAction::ReleaseAssociate => act.release_associate(),
                }
            });
        ctx.wait(write);
    }

    /// Frees the associate for other work while the order waits on its user.
    fn release_associate(&self) {
        self.orders
            .dispatch()
            .order_finished(self.record.associate_id, self.record.order_id);
        self.orders.associate_off(&self.record);
    }

    /// Tells the user the successful payment that was just recorded.
    fn report_settled(&mut self) {
        if let Some(outcome) = self.settling.take() {
            self.orders.sessions().to_user(
                self.record.user_id,
                PaymentResult {
                    payment: Box::new(outcome),
                },
            );
        }
    }

    /// The order is over: the associate is free, and the actor stops.
    fn finish(&mut self, ctx: &mut Context<Self>) {
        if std::mem::take(&mut self.stalled) {
            metrics::gauge!(crate::telemetry::ORDERS_STALLED).decrement(1.0);
        }
        self.orders
            .dispatch()
            .order_finished(self.record.associate_id, self.record.order_id);
        self.orders.unregister(&self.record);
        ctx.stop();
    }

    /// Picks up where a recovered order left off.
    fn resume(&mut self, ctx: &mut Context<Self>) {
        match self.record.state {
            OrderState::Completed => self.bill(ctx),
            OrderState::Paid => self.commit_now(OrderEventKind::Closed, Vec::new(), ctx),
            _ => {}
        }
    }
}

/// How `record` shows on the ops board, in its state since `since_ms`.
pub(crate) fn board_entry(
    record: &storage::OrderRecord,
    since_ms: u64,
    stalled: bool,
) -> BoardOrder {
    let pickup = (record.pickup.lat(), record.pickup.lng());
    BoardOrder {
        order_id: record.order_id,
        user_id: record.user_id,
        associate_id: record.associate_id,
        state: record.state,
        since_ms,
        stalled,
        pickup,
        user_at: None,
        associate_at: None,
    }
}

impl Actor for OrderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.post_on_board();
        self.watch_stall(ctx);
        self.resume(ctx);
    }
}

impl Handler<Act> for OrderActor {
    type Result = AtomicResponse<Self, Result<(), ActorError>>;

    /// Checks the party and the action, then commits the transition.
    fn handle(&mut self, msg: Act, _: &mut Context<Self>) -> Self::Result {
        let Some(side) = side_of(&self.record, msg.party) else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(ActorError::NotYourOrder))));
        };
        if self.record.state.is_terminal() {
            return AtomicResponse::new(Box::pin(fut::ready(Err(ActorError::InvalidState(
                format!("the order is {}", self.record.state.as_str()),
            )))));
        }
        match self.event_for(side, msg.action) {
            Ok((kind, writes)) => AtomicResponse::new(self.commit(Some(side), kind, writes)),
            Err(e) => AtomicResponse::new(Box::pin(fut::ready(Err(e)))),
        }
    }
}

impl Handler<View> for OrderActor {
    type Result = Result<OrderSnapshot, ActorError>;

    /// The party's copy of the order.
    fn handle(&mut self, msg: View, _: &mut Context<Self>) -> Self::Result {
        let side = side_of(&self.record, msg.party).ok_or(ActorError::NotYourOrder)?;
        Ok(self.snapshot_for(side))
    }
}

impl Handler<OpsAct> for OrderActor {
    type Result = AtomicResponse<Self, Result<(), ActorError>>;

    /// Cancels (any open order, without a fee) or completes (started work) by hand.
    fn handle(&mut self, msg: OpsAct, _: &mut Context<Self>) -> Self::Result {
        let refuse = |e| AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        if let Some(busy) = self.charging {
            return refuse(ActorError::PaymentPending(busy));
        }
        let kind = match msg.action {
            OpsAction::Cancel => OrderEventKind::OpsCancelled { reason: msg.reason },
            OpsAction::Complete if self.record.state == OrderState::Started => {
                match self.billable_minutes() {
                    Ok(minutes) => OrderEventKind::OpsCompleted {
                        minutes,
                        reason: msg.reason,
                    },
                    Err(e) => return refuse(e),
                }
            }
            OpsAction::Complete => {
                return refuse(ActorError::InvalidState(format!(
                    "the order is {}: only started work can be completed (cancel it instead)",
                    self.record.state.as_str()
                )));
            }
        };
        if !kind.allowed_from(self.record.state) {
            return refuse(ActorError::InvalidState(format!(
                "the order is {} and cannot become {}",
                self.record.state.as_str(),
                kind.state().as_str()
            )));
        }
        let completed = matches!(kind, OrderEventKind::OpsCompleted { .. });
        AtomicResponse::new(Box::pin(self.commit(None, kind, Vec::new()).map(
            move |done, act, _| {
                // Work ops close by hand frees the associate at once: they are not kept
                // busy while the user pays.
                if done.is_ok() && completed {
                    act.release_associate();
                }
                done
            },
        )))
    }
}

/// How long recovery waits between attempts to bill an order whose billing failed.
pub(crate) const BILLING_RETRY: Duration = Duration::from_secs(5);

impl Handler<crate::peers::Relinquish> for OrderActor {
    type Result = ();

    /// Stops here if the order's pickup is in the cell handed over: its new owner
    /// rebuilds it from the store.
    fn handle(&mut self, msg: crate::peers::Relinquish, ctx: &mut Context<Self>) {
        if self.orders.dispatch().shard_of(self.record.pickup) == msg.shard {
            if std::mem::take(&mut self.stalled) {
                metrics::gauge!(crate::telemetry::ORDERS_STALLED).decrement(1.0);
            }
            self.orders.handed_over(&self.record);
            ctx.stop();
        }
    }
}
