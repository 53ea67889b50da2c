//! The payment actor: charges through the gateway with a timeout, and reconciles
//! payments whose outcome is unknown (timeouts, late confirmations, a restart while a
//! charge was in flight) until the gateway says how they ended. Idempotency: our payment
//! id is the gateway's key, so asking again never charges twice; a payment given up on
//! is voided at the gateway first, so it can never be captured after being called
//! failed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use wire::PaymentId;
use wire::model::PaymentStatus;

use crate::orders::Orders;
use crate::orders::gateway::{ChargeRequest, ChargeStatus, GatewayError, PaymentGateway};
use crate::orders::messages::{Charge, PendingCount, Recover};

/// Payment settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentConfig {
    /// How long to wait for the gateway before calling the payment pending.
    pub gateway_timeout: Duration,
    /// How often pending payments are looked up.
    pub reconcile_every: Duration,
    /// Lookups that find no trace of a charge before it is voided and called failed
    /// (for charges this process sent; one left pending by a restart is settled at the
    /// first lookup that reaches the gateway, as nothing of it can still be in flight).
    pub give_up_after: u32,
}

impl Default for PaymentConfig {
    fn default() -> Self {
        Self {
            gateway_timeout: Duration::from_secs(10),
            reconcile_every: Duration::from_secs(5),
            give_up_after: 60,
        }
    }
}

/// A payment whose outcome is not known yet.
struct Pending {
    record: storage::PaymentRecord,
    /// Lookups that found no trace of it.
    misses: u32,
    /// Left pending by a restart: no charge of it can be in flight.
    recovered: bool,
    /// A lookup or void is out for it.
    asking: bool,
}

/// Charges and reconciles payments.
pub struct PaymentActor {
    gateway: Arc<dyn PaymentGateway>,
    config: PaymentConfig,
    orders: Orders,
    pending: HashMap<PaymentId, Pending>,
}

impl PaymentActor {
    /// A payment actor over `gateway`.
    pub fn new(gateway: Arc<dyn PaymentGateway>, config: PaymentConfig, orders: Orders) -> Self {
        Self {
            gateway,
            config,
            orders,
            pending: HashMap::new(),
        }
    }

    fn resolve(record: &mut storage::PaymentRecord, status: ChargeStatus, now: u64) -> bool {
        match status {
            ChargeStatus::Captured { transaction_ref } => {
                record.status = PaymentStatus::Succeeded;
                record.transaction_ref = Some(transaction_ref);
            }
            ChargeStatus::Declined { reason } => {
                record.status = PaymentStatus::Failed;
                record.failure = Some(reason);
            }
            ChargeStatus::Processing => return false,
        }
        record.updated_at_ms = now;
        true
    }

    /// Asks the gateway about every pending payment that has no question out: a lookup,
    /// or a void once the payment is to be given up on.
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let give_up = self.config.give_up_after;
        let mut asks = Vec::new();
        for (id, p) in &mut self.pending {
            if !p.asking {
                p.asking = true;
                asks.push((*id, p.misses >= give_up));
            }
        }
        for (id, void) in asks {
            let key = id.to_string();
            let asked = if void {
                self.gateway.void(key)
            } else {
                self.gateway.lookup(key)
            };
            asked
                .into_actor(self)
                .map(move |found, act, ctx| act.answered(id, found, void, ctx))
                .spawn(ctx);
        }
    }

    /// The gateway answered about payment `id`: to a lookup, or (`voided`) to a void.
    fn answered(
        &mut self,
        id: PaymentId,
        found: Result<Option<ChargeStatus>, GatewayError>,
        voided: bool,
        ctx: &mut Context<Self>,
    ) {
        let now = self.orders.dispatch().now_ms();
        let give_up = self.config.give_up_after;
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        p.asking = false;
        let done = match found {
            // Captured or declined (after a void: it went through all the same).
            Ok(Some(status)) => Self::resolve(&mut p.record, status, now),
            // Voided: it never happened and now never will.
            Ok(None) if voided => {
                p.record.status = PaymentStatus::Failed;
                p.record.failure = Some("the gateway never received the charge".into());
                p.record.updated_at_ms = now;
                true
            }
            // Not seen (yet). A restart's leftover cannot arrive late: void it now. A
            // charge of this process may still be in flight: wait out a few lookups.
            Ok(None) => {
                p.misses = if p.recovered { give_up } else { p.misses + 1 };
                if p.misses >= give_up {
                    self.reconcile(ctx);
                }
                false
            }
            // Unreachable gateway: keep the payment pending and ask again later.
            Err(_) => false,
        };
        if done {
            self.settled(id);
        }
    }

    fn settled(&mut self, id: PaymentId) {
        if let Some(p) = self.pending.remove(&id) {
            self.orders.payment_settled(p.record);
        }
    }

    fn watch(&mut self, record: storage::PaymentRecord, recovered: bool) {
        self.pending.insert(
            record.payment_id,
            Pending {
                record,
                misses: 0,
                recovered,
                asking: false,
            },
        );
    }
}

impl Actor for PaymentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.config.reconcile_every, |act, ctx| act.reconcile(ctx));
    }
}

impl Handler<PendingCount> for PaymentActor {
    type Result = usize;

    /// The payments under watch.
    fn handle(&mut self, _: PendingCount, _: &mut Context<Self>) -> usize {
        self.pending.len()
    }
}

impl Handler<Charge> for PaymentActor {
    type Result = ResponseActFuture<Self, storage::PaymentRecord>;

    /// Asks the gateway; a timeout or "processing" leaves the payment pending and watched.
    fn handle(&mut self, msg: Charge, _: &mut Context<Self>) -> Self::Result {
        let request = ChargeRequest {
            key: msg.payment.payment_id.to_string(),
            method: msg.payment.method,
            instrument: msg.instrument,
            amount_minor: msg.payment.amount_minor,
            currency: msg.currency,
        };
        let charge =
            tokio::time::timeout(self.config.gateway_timeout, self.gateway.charge(request));
        let record = msg.payment;
        Box::pin(charge.into_actor(self).map(move |answer, act, _| {
            let mut record = record;
            let now = act.orders.dispatch().now_ms();
            let status = match answer {
                Ok(Ok(status)) => Some(status),
                Ok(Err(_)) | Err(_) => None,
            };
            let settled = status.is_some_and(|s| Self::resolve(&mut record, s, now));
            if !settled {
                act.watch(record.clone(), false);
            }
            record
        }))
    }
}

impl Handler<Recover> for PaymentActor {
    type Result = ();

    /// Puts a payment a restart left pending under watch and asks about it at once.
    fn handle(&mut self, msg: Recover, ctx: &mut Context<Self>) {
        self.watch(msg.payment, true);
        self.reconcile(ctx);
    }
}
