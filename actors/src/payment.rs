//! The payment actor: charges through the gateway with a timeout, and reconciles
//! payments whose outcome is unknown (timeouts, late confirmations) until the gateway
//! says how they ended. Idempotency: our payment id is the gateway's key, so asking
//! again never charges twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use wire::PaymentId;
use wire::model::PaymentStatus;

use crate::gateway::{ChargeRequest, ChargeStatus, GatewayError, PaymentGateway};
use crate::orders::Orders;

/// Payment settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentConfig {
    /// How long to wait for the gateway before calling the payment pending.
    pub gateway_timeout: Duration,
    /// How often pending payments are looked up.
    pub reconcile_every: Duration,
    /// Lookups that find no trace of a charge before it is called failed.
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

/// Charge a pending payment.
#[derive(Debug, Message)]
#[rtype(result = "storage::PaymentRecord")]
pub struct Charge {
    /// The payment, status pending, already stored.
    pub payment: storage::PaymentRecord,
    /// The full instrument (the record holds it masked).
    pub instrument: String,
    /// The invoice currency.
    pub currency: String,
}

/// Keep looking up a pending payment (used at start-up for payments left pending).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Watch {
    /// The pending payment.
    pub payment: storage::PaymentRecord,
}

/// Charges and reconciles payments.
pub struct PaymentActor {
    gateway: Arc<dyn PaymentGateway>,
    config: PaymentConfig,
    orders: Orders,
    /// Pending payments and how many lookups found nothing.
    pending: HashMap<PaymentId, (storage::PaymentRecord, u32)>,
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

    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        for (id, (record, _)) in &self.pending {
            let id = *id;
            let key = record.payment_id.to_string();
            self.gateway
                .lookup(key)
                .into_actor(self)
                .map(move |found, act, _| act.looked_up(id, found))
                .spawn(ctx);
        }
    }

    fn looked_up(&mut self, id: PaymentId, found: Result<Option<ChargeStatus>, GatewayError>) {
        let now = self.orders.dispatch().now_ms();
        let give_up = self.config.give_up_after;
        let Some((record, misses)) = self.pending.get_mut(&id) else {
            return;
        };
        let done = match found {
            Ok(Some(status)) => Self::resolve(record, status, now),
            Ok(None) => {
                *misses += 1;
                if *misses >= give_up {
                    record.status = PaymentStatus::Failed;
                    record.failure = Some("the gateway never confirmed the charge".into());
                    record.updated_at_ms = now;
                    true
                } else {
                    false
                }
            }
            // Unreachable gateway: keep the payment pending and ask again later.
            Err(_) => false,
        };
        if done && let Some((record, _)) = self.pending.remove(&id) {
            self.orders.payment_settled(record);
        }
    }
}

impl Actor for PaymentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.config.reconcile_every, |act, ctx| act.reconcile(ctx));
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
                act.pending.insert(record.payment_id, (record.clone(), 0));
            }
            record
        }))
    }
}

impl Handler<Watch> for PaymentActor {
    type Result = ();

    /// Adds a pending payment to the reconciliation round.
    fn handle(&mut self, msg: Watch, _: &mut Context<Self>) {
        self.pending
            .insert(msg.payment.payment_id, (msg.payment, 0));
    }
}
