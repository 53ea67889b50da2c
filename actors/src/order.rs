//! The order actor: one per open order. Moves the order along its lifecycle, persisting
//! each transition with its event before telling either party, checks the start PIN,
//! prices cancellations, and frees the associate when the order ends.

use std::time::Duration;

use actix::prelude::*;
use rand::Rng;
use tokio::time::Instant;
use wire::model::{
    Invoice, Minor, OrderEventKind, OrderSnapshot, OrderState, PaymentMethod, PaymentOutcome,
    PaymentStatus, Role, Settlement,
};
use wire::{InvoiceFrame, OrderClosed, OrderUpdate, PartyId, PaymentId, PaymentResult};

use crate::billing::Bill;
use crate::error::ActorError;
use crate::orders::{Orders, side_of};
use crate::payment::Charge;
use crate::pricing;

/// A party acts on the order.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Act {
    /// Who acts (must be on the order).
    pub party: PartyId,
    /// What they do.
    pub action: Action,
}

/// The order as a party may see it.
#[derive(Debug, Message)]
#[rtype(result = "Result<OrderSnapshot, ActorError>")]
pub struct View {
    /// Who asks (must be on the order).
    pub party: PartyId,
}

/// The user pays the invoice through the gateway.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Pay {
    /// Who pays (must be the order's user).
    pub party: PartyId,
    /// Card, UPI or wallet.
    pub method: PaymentMethod,
    /// The instrument as the gateway knows it.
    pub instrument: String,
    /// The user's idempotency key.
    pub idempotency_key: String,
    /// Tip in minor units.
    pub tip_minor: Minor,
}

/// The associate confirms cash.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct CashReceived {
    /// Who confirms (must be the order's associate).
    pub party: PartyId,
    /// How much they received.
    pub amount_minor: Minor,
}

/// Billing priced the order.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Invoiced {
    /// The invoice.
    pub invoice: Invoice,
    /// Its tax invoice.
    pub tax: storage::TaxInvoice,
}

/// A payment's outcome became known.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Settled {
    /// The payment, succeeded or failed.
    pub payment: storage::PaymentRecord,
}

/// What a party can do to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The associate sets out.
    EnRoute,
    /// The associate is at the pickup.
    Arrived,
    /// The associate starts work with the user's PIN.
    Start {
        /// The PIN.
        pin: String,
    },
    /// Either side marks the work done.
    Complete,
    /// Either side cancels before work starts.
    Cancel {
        /// Why.
        reason: Option<String>,
    },
}

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
}

impl OrderActor {
    /// The actor for an order already on disk.
    pub fn new(record: storage::OrderRecord, orders: Orders) -> Self {
        let invoice = record
            .invoice_id
            .and_then(|id| orders.store().invoice(id).ok().flatten());
        Self {
            record,
            orders,
            wrong_pins: 0,
            locked_until: None,
            invoice,
            charging: None,
            billing: false,
            settling: None,
        }
    }

    /// The order as the associate sees it (no PIN), with `invoice` if billed.
    pub(crate) fn view_of(r: &storage::OrderRecord, invoice: Option<Invoice>) -> OrderSnapshot {
        OrderSnapshot {
            order_id: r.order_id,
            request_id: r.request_id,
            state: r.state,
            task: r.task.clone(),
            pickup: r.pickup,
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
        let mut view = Self::view_of(&self.record, self.invoice.clone());
        if side == Role::User {
            view.pin = Some(self.record.pin.clone());
        }
        view
    }

    fn parties(&self) -> [PartyId; 2] {
        [
            PartyId::User(self.record.user_id),
            PartyId::Associate(self.record.associate_id),
        ]
    }

    /// The event a party's action becomes, after the checks only this actor can make.
    fn event_for(&mut self, side: Role, action: Action) -> Result<OrderEventKind, ActorError> {
        let associate_only = |what: &str| {
            if side == Role::Associate {
                Ok(())
            } else {
                Err(ActorError::InvalidState(format!(
                    "only the associate marks {what}"
                )))
            }
        };
        Ok(match action {
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
            Action::Complete => {
                let started = self.record.started_at_ms.ok_or_else(|| {
                    ActorError::InvalidState(format!(
                        "the order is {} and cannot complete",
                        self.record.state.as_str()
                    ))
                })?;
                let worked_ms = self.orders.dispatch().now_ms().saturating_sub(started);
                // Billable minutes: every started minute counts, at least one.
                let minutes = worked_ms.div_ceil(60_000).max(1);
                OrderEventKind::Completed {
                    minutes: u32::try_from(minutes).unwrap_or(u32::MAX),
                }
            }
            Action::Cancel { reason } => OrderEventKind::Cancelled {
                by: side,
                reason,
                fee_minor: self.cancellation_fee(),
            },
        })
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
        let config = &self.orders.shared.config;
        if self.wrong_pins >= config.pin_attempts {
            self.wrong_pins = 0;
            self.locked_until = Some(now + config.pin_lock);
            return Err(ActorError::PinLocked(config.pin_lock.as_secs()));
        }
        Err(ActorError::WrongPin)
    }

    /// Free within the policy's window after allotment, the policy's fee after it.
    fn cancellation_fee(&self) -> wire::model::Minor {
        let policy = crate::pricing::settings_or_default(self.orders.store()).cancellation;
        let since = self
            .orders
            .dispatch()
            .now_ms()
            .saturating_sub(self.record.allotted_at_ms);
        if since < u64::from(policy.free_minutes) * 60_000 {
            0
        } else {
            policy.fee_minor
        }
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
        let write = self
            .orders
            .store()
            .transition_durable(self.record.order_id, now, kind, side);
        Box::pin(write.into_actor(self).map(move |committed, act, ctx| {
            let storage::Committed {
                order,
                event,
                feed_seq,
                ..
            } = committed?;
            act.record = order;
            for party in act.parties() {
                let update = OrderUpdate {
                    order_id: event.order_id,
                    state: event.state,
                    at_ms: event.at_ms,
                    by,
                };
                act.orders.sessions().send(party, update.into()).ok();
            }
            let state = event.state;
            act.after(state, ctx);
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

    /// What a newly reached state sets off.
    fn after(&mut self, state: OrderState, ctx: &mut Context<Self>) {
        match state {
            OrderState::Completed => {
                self.orders.stop_tracking(&self.record);
                // Billing hears of the completion on the bus; should the invoice not
                // arrive (billing failed, or restarted), ask again directly.
                ctx.run_later(BILLING_RETRY, |act, ctx| act.bill(ctx));
            }
            OrderState::Billed => {
                if let Some(invoice) = &self.invoice {
                    for party in self.parties() {
                        let frame = InvoiceFrame {
                            invoice: Box::new(invoice.clone()),
                        };
                        self.orders.sessions().send(party, frame.into()).ok();
                    }
                }
            }
            OrderState::Paid => {
                if let Some(outcome) = self.settling.take() {
                    self.orders.sessions().to_user(
                        self.record.user_id,
                        PaymentResult {
                            payment: Box::new(outcome),
                        },
                    );
                }
                self.commit_now(OrderEventKind::Closed, Vec::new(), ctx);
            }
            OrderState::Closed | OrderState::Cancelled => {
                if state == OrderState::Closed
                    && let Some(invoice) = &self.invoice
                {
                    for party in self.parties() {
                        let frame = OrderClosed {
                            order_id: self.record.order_id,
                            invoice: Box::new(invoice.clone()),
                        };
                        self.orders.sessions().send(party, frame.into()).ok();
                    }
                }
                self.orders
                    .dispatch()
                    .order_finished(self.record.associate_id, self.record.order_id);
                self.orders.unregister(&self.record);
                ctx.stop();
            }
            _ => {}
        }
    }

    /// Asks billing for the invoice of a completed order (recovery, or a retry).
    fn bill(&mut self, ctx: &mut Context<Self>) {
        if self.billing || self.record.state != OrderState::Completed {
            return;
        }
        self.billing = true;
        let minutes = self
            .record
            .completed_at_ms
            .zip(self.record.started_at_ms)
            .map_or(1, |(end, start)| {
                end.saturating_sub(start).div_ceil(60_000).max(1)
            });
        let bill = Bill {
            order: self.record.clone(),
            minutes: u32::try_from(minutes).unwrap_or(u32::MAX),
        };
        self.orders
            .billing()
            .send(bill)
            .into_actor(self)
            .map(|priced, act, ctx| {
                act.billing = false;
                match priced {
                    Ok(Ok((invoice, tax))) => act.apply_invoice(invoice, tax, ctx),
                    Ok(Err(e)) => {
                        tracing::error!(order = %act.record.order_id, error = %e, "billing failed; retrying");
                        ctx.run_later(BILLING_RETRY, |act, ctx| act.bill(ctx));
                    }
                    Err(e) => {
                        tracing::error!(order = %act.record.order_id, error = %e, "billing unavailable; retrying");
                        ctx.run_later(BILLING_RETRY, |act, ctx| act.bill(ctx));
                    }
                }
            })
            .spawn(ctx);
    }

    fn apply_invoice(
        &mut self,
        invoice: Invoice,
        tax: storage::TaxInvoice,
        ctx: &mut Context<Self>,
    ) {
        if self.record.state != OrderState::Completed {
            return;
        }
        let kind = OrderEventKind::Billed {
            invoice_id: invoice.invoice_id,
            total_minor: invoice.total_minor,
        };
        self.invoice = Some(invoice.clone());
        self.commit_now(
            kind,
            vec![
                storage::SideWrite::Invoice(invoice),
                storage::SideWrite::TaxInvoice(tax),
            ],
            ctx,
        );
    }

    /// Records a payment's outcome durably, then tells the user. On success it settles
    /// the invoice (tip and settlement) and moves the order to paid, which closes it; the
    /// user hears of the success only once the order is paid on disk.
    fn settle(&mut self, payment: storage::PaymentRecord, ctx: &mut Context<Self>) {
        if self.charging == Some(payment.payment_id) {
            self.charging = None;
        }
        let method = payment.method;
        metrics::counter!(
            crate::telemetry::PAYMENTS,
            "method" => method_name(method),
            "status" => status_name(payment.status)
        )
        .increment(1);
        let outcome = outcome_of(&payment);
        let invoice = match (&self.invoice, payment.status, self.record.state) {
            (Some(invoice), PaymentStatus::Succeeded, OrderState::Billed) => invoice.clone(),
            _ => {
                // Failed, pending, or too late to matter: store it, then tell the user.
                let stored = self.orders.store().put_payment(&payment);
                let user = self.record.user_id;
                let write = async move {
                    match stored {
                        Ok(ticket) => ticket.durable().await,
                        Err(e) => Err(e),
                    }
                }
                .into_actor(self)
                .map(move |durable, act, _| match durable {
                    Ok(()) => act.orders.sessions().to_user(
                        user,
                        PaymentResult {
                            payment: Box::new(outcome),
                        },
                    ),
                    Err(e) => tracing::error!(error = %e, "could not store a payment outcome"),
                });
                ctx.wait(write);
                return;
            }
        };
        let mut paid = match pricing::with_tip(&invoice, payment.tip_minor) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(order = %self.record.order_id, error = %e, "tip overflowed");
                invoice
            }
        };
        paid.settlement = Some(Settlement {
            method,
            transaction_ref: payment.transaction_ref.clone().unwrap_or_default(),
            paid_at_ms: payment.updated_at_ms,
        });
        self.invoice = Some(paid.clone());
        self.settling = Some(outcome);
        let kind = OrderEventKind::Paid {
            payment_id: payment.payment_id,
            method,
            amount_minor: payment.amount_minor,
        };
        self.commit_now(
            kind,
            vec![
                storage::SideWrite::Payment(payment),
                storage::SideWrite::Invoice(paid),
            ],
            ctx,
        );
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

fn method_name(m: PaymentMethod) -> &'static str {
    match m {
        PaymentMethod::Card => "card",
        PaymentMethod::Upi => "upi",
        PaymentMethod::Wallet => "wallet",
        PaymentMethod::Cash => "cash",
    }
}

fn status_name(s: PaymentStatus) -> &'static str {
    match s {
        PaymentStatus::Pending => "pending",
        PaymentStatus::Succeeded => "succeeded",
        PaymentStatus::Failed => "failed",
    }
}

/// How a payment record is reported to the user.
pub(crate) fn outcome_of(p: &storage::PaymentRecord) -> PaymentOutcome {
    PaymentOutcome {
        payment_id: p.payment_id,
        order_id: p.order_id,
        idempotency_key: p.idempotency_key.clone(),
        status: p.status,
        amount_minor: p.amount_minor,
        transaction_ref: p.transaction_ref.clone(),
        failure: p.failure.clone(),
    }
}

/// The instrument with all but its last four characters masked.
fn mask(instrument: &str) -> String {
    let n = instrument.chars().count();
    instrument
        .chars()
        .enumerate()
        .map(|(i, c)| if i + 4 < n { '*' } else { c })
        .collect()
}

impl Actor for OrderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
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
        match self.event_for(side, msg.action) {
            Ok(kind) => AtomicResponse::new(self.commit(Some(side), kind, Vec::new())),
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

impl Handler<Pay> for OrderActor {
    type Result = Result<(), ActorError>;

    /// Starts a gateway payment of the invoice plus tip. A key already used returns that
    /// payment's outcome again instead of charging.
    fn handle(&mut self, msg: Pay, ctx: &mut Context<Self>) -> Self::Result {
        let invoice = self.payable_invoice(msg.party, Role::User)?;
        let now = self.orders.dispatch().now_ms();
        let record = storage::PaymentRecord {
            payment_id: PaymentId::new(),
            order_id: self.record.order_id,
            user_id: self.record.user_id,
            idempotency_key: msg.idempotency_key,
            method: msg.method,
            instrument_masked: mask(&msg.instrument),
            amount_minor: invoice
                .total_minor
                .checked_add(msg.tip_minor)
                .ok_or_else(|| ActorError::Internal("amount overflow".into()))?,
            tip_minor: msg.tip_minor,
            status: PaymentStatus::Pending,
            transaction_ref: None,
            failure: None,
            created_at_ms: now,
            updated_at_ms: now,
        };
        match self.orders.store().begin_payment(&record)? {
            storage::PaymentStart::Existing(existing) => {
                // The same key again: the first payment's outcome, never a new charge.
                let outcome = outcome_of(&existing);
                self.orders.sessions().to_user(
                    self.record.user_id,
                    PaymentResult {
                        payment: Box::new(outcome),
                    },
                );
                Ok(())
            }
            storage::PaymentStart::Created(record, _ticket) => {
                if let Some(busy) = self.charging {
                    // Another payment is under way: this one fails without a charge.
                    let mut refused = record;
                    refused.status = PaymentStatus::Failed;
                    refused.failure = Some(format!("payment {busy} is already in progress"));
                    self.settle(refused, ctx);
                    return Ok(());
                }
                self.charging = Some(record.payment_id);
                let charge = Charge {
                    payment: record.clone(),
                    instrument: msg.instrument,
                    currency: invoice.currency,
                };
                self.orders
                    .payments()
                    .send(charge)
                    .into_actor(self)
                    .map(move |answer, act, ctx| match answer {
                        Ok(result) if result.status == PaymentStatus::Pending => {
                            // Unknown outcome: the user hears "pending"; reconciliation settles it.
                            let mut pending = result;
                            pending.failure = None;
                            act.report_pending(&pending);
                        }
                        Ok(result) => act.settle(result, ctx),
                        Err(e) => {
                            tracing::error!(error = %e, "payment actor unavailable");
                            act.report_pending(&record);
                        }
                    })
                    .spawn(ctx);
                Ok(())
            }
        }
    }
}

impl OrderActor {
    fn report_pending(&mut self, payment: &storage::PaymentRecord) {
        let mut outcome = outcome_of(payment);
        outcome.status = PaymentStatus::Pending;
        outcome.transaction_ref = None;
        outcome.failure = None;
        self.orders.sessions().to_user(
            self.record.user_id,
            PaymentResult {
                payment: Box::new(outcome),
            },
        );
    }

    /// The invoice to settle, if `party` is the order's `side` and the order is billed.
    fn payable_invoice(&self, party: PartyId, side: Role) -> Result<Invoice, ActorError> {
        if side_of(&self.record, party) != Some(side) {
            return Err(ActorError::NotYourOrder);
        }
        match (&self.invoice, self.record.state) {
            (Some(invoice), OrderState::Billed) => Ok(invoice.clone()),
            (_, state) => Err(ActorError::InvalidState(format!(
                "the order is {} and is not payable",
                state.as_str()
            ))),
        }
    }
}

impl Handler<CashReceived> for OrderActor {
    type Result = Result<(), ActorError>;

    /// Settles the invoice in cash when the associate confirms at least its total.
    fn handle(&mut self, msg: CashReceived, ctx: &mut Context<Self>) -> Self::Result {
        let invoice = self.payable_invoice(msg.party, Role::Associate)?;
        if self.charging.is_some() {
            return Err(ActorError::InvalidState(
                "a card payment is in progress".into(),
            ));
        }
        if msg.amount_minor < invoice.total_minor {
            return Err(ActorError::InsufficientAmount(format!(
                "received {} but the invoice is {}",
                msg.amount_minor, invoice.total_minor
            )));
        }
        let now = self.orders.dispatch().now_ms();
        let payment_id = PaymentId::new();
        let record = storage::PaymentRecord {
            payment_id,
            order_id: self.record.order_id,
            user_id: self.record.user_id,
            idempotency_key: format!("cash-{payment_id}"),
            method: PaymentMethod::Cash,
            instrument_masked: "cash".into(),
            amount_minor: invoice.total_minor,
            tip_minor: 0,
            status: PaymentStatus::Succeeded,
            transaction_ref: Some(format!("cash-{}", self.record.order_id)),
            failure: None,
            created_at_ms: now,
            updated_at_ms: now,
        };
        self.settle(record, ctx);
        Ok(())
    }
}

impl Handler<Invoiced> for OrderActor {
    type Result = ();

    /// Takes billing's invoice if the order still waits for one.
    fn handle(&mut self, msg: Invoiced, ctx: &mut Context<Self>) {
        self.apply_invoice(msg.invoice, msg.tax, ctx);
    }
}

impl Handler<Settled> for OrderActor {
    type Result = ();

    /// A pending payment's outcome arrived.
    fn handle(&mut self, msg: Settled, ctx: &mut Context<Self>) {
        self.settle(msg.payment, ctx);
    }
}

/// How long recovery waits between attempts to bill an order whose billing failed.
pub(crate) const BILLING_RETRY: Duration = Duration::from_secs(5);
