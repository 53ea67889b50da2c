//! The billing actor: turns a completed order into its invoice and tax invoice. It
//! listens on the event bus for completions; a recovered order that was completed but
//! never billed asks it directly.

use actix::prelude::*;
use wire::InvoiceId;
use wire::model::{Invoice, OrderEventKind, OrderState};

use crate::error::ActorError;
use crate::orders::Orders;
use crate::orders::bus::Subscription;
use crate::orders::messages::{Bill, Completed};
use crate::orders::pricing::{self, BillInput};

/// Prices orders.
pub struct BillingActor {
    orders: Orders,
    /// Taken when the actor starts; subscribed before, so no event is missed.
    events: Option<Subscription>,
}

impl BillingActor {
    /// A billing actor for `orders`, fed by `events` from the bus.
    pub fn new(orders: Orders, events: Subscription) -> Self {
        Self {
            orders,
            events: Some(events),
        }
    }
}

/// The invoice and tax invoice for `order`; redeems its discount code. Every store call
/// is awaited, so billing never holds an actor thread on the database.
async fn bill(
    orders: Orders,
    order: storage::OrderRecord,
    minutes: u32,
) -> Result<(Invoice, storage::TaxInvoice), ActorError> {
    let store = orders.store().clone();
    let settings = pricing::settings_or_default(store.pricing_async().await);
    let now = orders.dispatch().now_ms();
    let code = match &order.discount_code {
        Some(c) => store.discount_async(c).await?,
        None => None,
    };
    // Once-per-user codes apply only if this order holds the user's redemption.
    let code = match code {
        Some(c)
            if c.once_per_user
                && !store
                    .redeem_async(&c.code, order.user_id, order.order_id)
                    .await? =>
        {
            None
        }
        other => other,
    };
    let input = BillInput {
        invoice_id: InvoiceId::new(),
        order_id: order.order_id,
        task: &order.task,
        minutes,
        started_at_ms: order.started_at_ms.unwrap_or(order.allotted_at_ms),
        issued_at_ms: now,
        discount: code.as_ref(),
    };
    let invoice =
        pricing::price(&settings, &input).map_err(|e| ActorError::Internal(e.to_string()))?;
    let tax = tax_invoice(&order, &invoice, now);
    Ok((invoice, tax))
}

/// The tax invoice issued with `invoice` (its number comes from the store's sequence).
pub(crate) fn tax_invoice(
    order: &storage::OrderRecord,
    invoice: &Invoice,
    issued_at_ms: wire::model::UnixMs,
) -> storage::TaxInvoice {
    storage::TaxInvoice {
        number: 0,
        invoice_id: invoice.invoice_id,
        order_id: order.order_id,
        buyer: order.user.name.clone(),
        supplier: order.associate.name.clone(),
        taxable_minor: invoice.tax.base_minor,
        rate_bp: invoice.tax.rate_bp,
        tax_minor: invoice.tax.amount_minor,
        total_minor: invoice.total_minor,
        issued_at_ms,
    }
}

impl Actor for BillingActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(mut events) = self.events.take() else {
            return;
        };
        let addr = ctx.address();
        actix_rt::spawn(async move {
            while let Some((_, event)) = events.next().await {
                if let (
                    OrderState::Completed,
                    OrderEventKind::Completed { minutes }
                    | OrderEventKind::OpsCompleted { minutes, .. },
                ) = (event.state, &event.kind)
                {
                    addr.do_send(Completed {
                        order: event.order_id,
                        minutes: *minutes,
                    });
                }
            }
        });
    }
}

impl Handler<Completed> for BillingActor {
    type Result = ();

    /// Bills the order and hands the invoice to its actor.
    fn handle(&mut self, msg: Completed, ctx: &mut Context<Self>) {
        let orders = self.orders.clone();
        ctx.spawn(fut::wrap_future(async move {
            let billed = async {
                let order = orders
                    .store()
                    .order_async(msg.order)
                    .await?
                    .ok_or(ActorError::NotYourOrder)?;
                bill(orders.clone(), order, msg.minutes).await
            };
            match billed.await {
                Ok((invoice, tax)) => orders.invoiced(msg.order, invoice, tax),
                Err(e) => {
                    tracing::error!(order = %msg.order, error = %e, "billing failed; the order retries")
                }
            }
        }));
    }
}

impl Handler<Bill> for BillingActor {
    type Result = ResponseFuture<Result<(Invoice, storage::TaxInvoice), ActorError>>;

    /// Bills on request.
    fn handle(&mut self, msg: Bill, _: &mut Context<Self>) -> Self::Result {
        Box::pin(bill(self.orders.clone(), msg.order, msg.minutes))
    }
}
