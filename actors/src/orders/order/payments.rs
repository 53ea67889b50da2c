//! The order actor's payment protocol: gateway payments (durable before the gateway
//! is called, one pending at a time, keys answered again), cash confirmed by the
//! associate, and settlement of the outcome (durable before the user hears of it).

use actix::prelude::*;
use wire::model::{
    Invoice, OrderEventKind, OrderState, PaymentMethod, PaymentOutcome, PaymentStatus, Role,
    Settlement,
};
use wire::{PartyId, PaymentId, PaymentResult};

use crate::error::ActorError;
use crate::orders::messages::{CashReceived, Charge, Pay, Settled};
use crate::orders::pricing;
use crate::orders::side_of;

use super::OrderActor;

impl OrderActor {
    /// Records a payment's outcome durably, then tells the user. On success it settles
    /// the invoice (tip and settlement) and moves the order to paid, which closes it (or,
    /// for a cancellation fee, records the fee paid, which ends it); the user hears of
    /// the success only once that is on disk.
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
        let fee = self.record.owes_fee();
        let payable = self.record.state == OrderState::Billed || fee;
        let invoice = match (&self.invoice, payment.status) {
            (Some(invoice), PaymentStatus::Succeeded) if payable => invoice.clone(),
            _ => {
                if payment.status == PaymentStatus::Succeeded {
                    tracing::error!(order = %self.record.order_id, payment = %payment.payment_id,
                        "a captured payment arrived for an order that is no longer payable: refund it");
                }
                // Failed, or too late to matter: store it, then tell the user.
                let stored = self.orders.store().put_payment(&payment);
                let user = self.record.user_id;
                let write =
                    crate::disk::write(stored)
                        .into_actor(self)
                        .map(move |durable, act, _| match durable {
                            Ok(()) => act.orders.sessions().to_user(
                                user,
                                PaymentResult {
                                    payment: Box::new(outcome),
                                },
                            ),
                            Err(e) => {
                                tracing::error!(error = %e, "could not store a payment outcome")
                            }
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
        self.settling = Some(outcome);
        let (payment_id, amount_minor) = (payment.payment_id, payment.amount_minor);
        let kind = if fee {
            OrderEventKind::FeePaid {
                payment_id,
                method,
                amount_minor,
            }
        } else {
            OrderEventKind::Paid {
                payment_id,
                method,
                amount_minor,
            }
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
}

impl Handler<Pay> for OrderActor {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    /// Starts a gateway payment of the invoice plus tip (or of a cancellation fee). A key
    /// already used returns that payment's outcome again instead of charging; while a
    /// payment is pending, another is refused. The pending payment and its key are
    /// durable before the gateway is called.
    fn handle(&mut self, msg: Pay, ctx: &mut Context<Self>) -> Self::Result {
        match self.start_payment(msg, ctx) {
            Ok(started) => started,
            Err(e) => Box::pin(fut::ready(Err(e))),
        }
    }
}

impl OrderActor {
    fn start_payment(
        &mut self,
        msg: Pay,
        _: &mut Context<Self>,
    ) -> Result<ResponseActFuture<Self, Result<(), ActorError>>, ActorError> {
        let invoice = self.payable_invoice(msg.party, Role::User, true)?;
        let store = self.orders.store().clone();
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
        let charge = Charge {
            payment: record.clone(),
            instrument: msg.instrument,
            currency: invoice.currency,
        };
        // Every store call is awaited, never waited on: this thread runs other actors.
        let earlier = store.payment_by_key_async(record.user_id, &record.idempotency_key);
        Ok(Box::pin(earlier.into_actor(self).then(
            move |earlier, act, _| -> ResponseActFuture<Self, Result<(), ActorError>> {
                let begun = (|| {
                    if let Some(earlier) = earlier? {
                        act.report_existing(earlier)?;
                        return Ok(None);
                    }
                    if let Some(busy) = act.charging {
                        return Err(ActorError::PaymentPending(busy));
                    }
                    // From here a second payment is refused, while the record is stored.
                    act.charging = Some(record.payment_id);
                    Ok(Some(store.begin_payment_async(&record)))
                })();
                match begun {
                    Ok(Some(begin)) => Box::pin(
                        begin
                            .into_actor(act)
                            .then(move |begun, act, _| act.after_begin(begun, charge)),
                    ),
                    Ok(None) => Box::pin(fut::ready(Ok(()))),
                    Err(e) => Box::pin(fut::ready(Err(e))),
                }
            },
        )))
    }

    /// Goes on with a payment once its pending record is stored (or was found under its
    /// key): charges once that record is durable.
    fn after_begin(
        &mut self,
        begun: Result<storage::PaymentStart, storage::StorageError>,
        charge: Charge,
    ) -> ResponseActFuture<Self, Result<(), ActorError>> {
        let id = charge.payment.payment_id;
        let release = |act: &mut Self| {
            if act.charging == Some(id) {
                act.charging = None;
            }
        };
        let (record, ticket) = match begun {
            Ok(storage::PaymentStart::Created(record, ticket)) => (record, ticket),
            // The same user used the key on another order at this very moment.
            Ok(storage::PaymentStart::Existing(earlier)) => {
                release(self);
                return Box::pin(fut::ready(self.report_existing(earlier)));
            }
            Err(e) => {
                release(self);
                return Box::pin(fut::ready(Err(e.into())));
            }
        };
        Box::pin(
            crate::disk::durable(ticket)
                .into_actor(self)
                .map(move |durable, act, ctx| {
                    if let Err(e) = durable {
                        // Never charged: say so durably (at worst a restart finds it pending,
                        // voids it at the gateway and fails it).
                        let mut failed = record;
                        failed.status = PaymentStatus::Failed;
                        failed.failure = Some(format!("could not be recorded: {e}"));
                        act.settle(failed, ctx);
                        return Err(e);
                    }
                    act.charge(
                        Charge {
                            payment: record,
                            ..charge
                        },
                        ctx,
                    );
                    Ok(())
                }),
        )
    }

    /// Sends a durable pending payment to the gateway and handles the answer.
    fn charge(&mut self, charge: Charge, ctx: &mut Context<Self>) {
        let record = charge.payment.clone();
        self.orders
            .payments()
            .send(charge)
            .into_actor(self)
            .map(move |answer, act, ctx| match answer {
                Ok(result) if result.status == PaymentStatus::Pending => {
                    // Unknown outcome: the user hears "pending"; reconciliation settles it.
                    act.report_pending(&result);
                }
                Ok(result) => act.settle(result, ctx),
                Err(e) => {
                    tracing::error!(error = %e, "payment actor unavailable");
                    act.report_pending(&record);
                }
            })
            .spawn(ctx);
    }

    /// Answers a payment with a used key: that payment's outcome, if it is this order's.
    fn report_existing(&self, earlier: storage::PaymentRecord) -> Result<(), ActorError> {
        if earlier.order_id != self.record.order_id {
            return Err(ActorError::InvalidState(
                "this idempotency key was already used for another order's payment".into(),
            ));
        }
        self.orders.sessions().to_user(
            self.record.user_id,
            PaymentResult {
                payment: Box::new(outcome_of(&earlier)),
            },
        );
        Ok(())
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

    /// The invoice to settle, if `party` is the order's `side` and the order is billed
    /// (or, with `fees`, owes a cancellation fee).
    fn payable_invoice(
        &self,
        party: PartyId,
        side: Role,
        fees: bool,
    ) -> Result<Invoice, ActorError> {
        if side_of(&self.record, party) != Some(side) {
            return Err(ActorError::NotYourOrder);
        }
        let payable = self.record.state == OrderState::Billed || (fees && self.record.owes_fee());
        match &self.invoice {
            Some(invoice) if payable => Ok(invoice.clone()),
            _ => Err(ActorError::InvalidState(format!(
                "the order is {} and is not payable",
                self.record.state.as_str()
            ))),
        }
    }
}

impl Handler<CashReceived> for OrderActor {
    type Result = Result<(), ActorError>;

    /// Settles the invoice in cash when the associate confirms at least its total.
    fn handle(&mut self, msg: CashReceived, ctx: &mut Context<Self>) -> Self::Result {
        let invoice = self.payable_invoice(msg.party, Role::Associate, false)?;
        if let Some(busy) = self.charging {
            return Err(ActorError::PaymentPending(busy));
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

impl Handler<Settled> for OrderActor {
    type Result = ();

    /// A pending payment's outcome arrived.
    fn handle(&mut self, msg: Settled, ctx: &mut Context<Self>) {
        self.settle(msg.payment, ctx);
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
