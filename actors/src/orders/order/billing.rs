//! The order actor's side of billing: the billable time, asking billing for the
//! invoice and taking it, the cancellation fee and its invoice, and sending invoices
//! to the parties.

use actix::prelude::*;
use wire::model::{Invoice, Minor, OrderEventKind, OrderState};
use wire::{InvoiceFrame, InvoiceId, PartyId};

use crate::error::ActorError;
use crate::orders::messages::{Bill, Invoiced};
use crate::orders::pricing;

use super::{BILLING_RETRY, OrderActor};

impl OrderActor {
    /// Minutes of work to bill so far: every started minute counts, at least one.
    pub(super) fn billable_minutes(&self) -> Result<u32, ActorError> {
        let started = self.record.started_at_ms.ok_or_else(|| {
            ActorError::InvalidState(format!(
                "the order is {} and cannot complete",
                self.record.state.as_str()
            ))
        })?;
        let worked_ms = self.orders.dispatch().now_ms().saturating_sub(started);
        Ok(u32::try_from(worked_ms.div_ceil(60_000).max(1)).unwrap_or(u32::MAX))
    }

    /// The invoice and tax invoice of a cancellation fee, written with the cancellation.
    pub(super) fn fee_invoice(
        &self,
        fee_minor: Minor,
    ) -> Result<(InvoiceId, Vec<storage::SideWrite>), ActorError> {
        let settings = pricing::settings_or_default(self.orders.store().pricing());
        let now = self.orders.dispatch().now_ms();
        let invoice = pricing::cancellation_invoice(
            &settings,
            InvoiceId::new(),
            self.record.order_id,
            fee_minor,
            now,
        )
        .map_err(|e| ActorError::Internal(e.to_string()))?;
        let tax = crate::orders::billing::tax_invoice(&self.record, &invoice, now);
        Ok((
            invoice.invoice_id,
            vec![
                storage::SideWrite::Invoice(invoice),
                storage::SideWrite::TaxInvoice(tax),
            ],
        ))
    }

    /// Free within the policy's window after allotment, the policy's fee after it.
    pub(super) fn cancellation_fee(&self) -> wire::model::Minor {
        let policy =
            crate::orders::pricing::settings_or_default(self.orders.store().pricing()).cancellation;
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

    /// Sends the invoice to `parties`.
    pub(super) fn send_invoice(&self, parties: &[PartyId]) {
        if let Some(invoice) = &self.invoice {
            for party in parties {
                let frame = InvoiceFrame {
                    invoice: Box::new(invoice.clone()),
                };
                self.orders.sessions().send(*party, frame.into()).ok();
            }
        }
    }

    /// Asks billing for the invoice of a completed order (recovery, or a retry).
    pub(super) fn bill(&mut self, ctx: &mut Context<Self>) {
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

    pub(super) fn apply_invoice(
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
        self.commit_now(
            kind,
            vec![
                storage::SideWrite::Invoice(invoice),
                storage::SideWrite::TaxInvoice(tax),
            ],
            ctx,
        );
    }
}

impl Handler<Invoiced> for OrderActor {
    type Result = ();

    /// Takes billing's invoice if the order still waits for one.
    fn handle(&mut self, msg: Invoiced, ctx: &mut Context<Self>) {
        self.apply_invoice(msg.invoice, msg.tax, ctx);
    }
}
