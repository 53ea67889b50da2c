//! The order lifecycle both backends enforce: what a write may do to an order and what
//! it produced. One definition, so the backends cannot disagree.

use wire::OrderId;
use wire::model::{
    Cancellation, CancelledBy, Invoice, OrderEvent, OrderEventKind, OrderState, UnixMs,
};

use crate::ack::Ticket;
use crate::error::StorageError;
use crate::records::{OrderRecord, PaymentRecord, TaxInvoice};

/// A record written in the same atomic step as an order transition.
#[derive(Debug, Clone, PartialEq)]
pub enum SideWrite {
    /// Insert or replace an invoice.
    Invoice(Invoice),
    /// Issue a tax invoice; its `number` is assigned from the store's gap-free sequence.
    TaxInvoice(TaxInvoice),
    /// Insert or replace a payment.
    Payment(PaymentRecord),
}

/// What a committed order write produced.
#[derive(Debug)]
pub struct Committed {
    /// The order after the write.
    pub order: OrderRecord,
    /// The event written.
    pub event: OrderEvent,
    /// The event's position in the global feed.
    pub feed_seq: u64,
    /// Resolves once the write is on disk (at once for a [`Durable`] write, which only
    /// reports after its flush).
    pub ticket: Ticket,
}

/// Applies `event` to `order`: the one definition of what an event changes, used both
/// when writing and when replaying a log.
pub fn apply_event(order: &mut OrderRecord, event: &OrderEvent) {
    order.state = event.state;
    order.next_seq = event.seq + 1;
    match &event.kind {
        OrderEventKind::Allotted { .. } => order.allotted_at_ms = event.at_ms,
        OrderEventKind::EnRoute | OrderEventKind::Arrived => {}
        OrderEventKind::Started => order.started_at_ms = Some(event.at_ms),
        OrderEventKind::Completed { .. } => order.completed_at_ms = Some(event.at_ms),
        OrderEventKind::Billed { invoice_id, .. } => order.invoice_id = Some(*invoice_id),
        OrderEventKind::Paid { payment_id, .. } => order.payment_id = Some(*payment_id),
        OrderEventKind::Closed => order.ended_at_ms = Some(event.at_ms),
        OrderEventKind::Cancelled {
            by,
            reason,
            fee_minor,
            invoice_id,
        } => {
            if invoice_id.is_some() {
                order.invoice_id = *invoice_id;
            }
            order.cancellation = Some(Cancellation {
                by: (*by).into(),
                reason: reason.clone(),
                fee_minor: *fee_minor,
            });
            order.ended_at_ms = Some(event.at_ms);
        }
        OrderEventKind::FeePaid { payment_id, .. } => order.payment_id = Some(*payment_id),
        OrderEventKind::OpsCancelled { reason } => {
            order.cancellation = Some(Cancellation {
                by: CancelledBy::Ops,
                reason: Some(reason.clone()),
                fee_minor: 0,
            });
            order.ended_at_ms = Some(event.at_ms);
        }
        OrderEventKind::OpsCompleted { .. } => order.completed_at_ms = Some(event.at_ms),
        OrderEventKind::Stalled { .. } => {}
    }
}

/// The order as created, with its first event (allotted, sequence 0).
pub(crate) fn created(record: &OrderRecord) -> (OrderRecord, OrderEvent) {
    let mut order = record.clone();
    let event = OrderEvent {
        order_id: order.order_id,
        seq: 0,
        at_ms: order.allotted_at_ms,
        state: OrderState::Allotted,
        kind: OrderEventKind::Allotted {
            user_id: order.user_id,
            associate_id: order.associate_id,
        },
    };
    apply_event(&mut order, &event);
    (order, event)
}

/// Checks that `kind` may happen to `order` now and applies it: the order after, and the
/// event to append. Refused: a move the lifecycle forbids, a fee paid when none is owed.
pub(crate) fn step(
    order: &OrderRecord,
    order_id: OrderId,
    at_ms: UnixMs,
    kind: &OrderEventKind,
) -> Result<(OrderRecord, OrderEvent), StorageError> {
    let to = kind.state();
    if !kind.allowed_from(order.state) {
        return Err(StorageError::InvalidTransition {
            from: order.state,
            to,
        });
    }
    if let OrderEventKind::FeePaid { .. } = kind
        && !order.owes_fee()
    {
        return Err(StorageError::NothingOwed);
    }
    let event = OrderEvent {
        order_id,
        seq: order.next_seq,
        at_ms,
        state: to,
        kind: kind.clone(),
    };
    let mut order = order.clone();
    apply_event(&mut order, &event);
    Ok((order, event))
}

/// Whether the order, after a write, has left the open set (over, and owing nothing).
pub(crate) fn leaves_open(order: &OrderRecord) -> bool {
    order.state.is_terminal() && !order.owes_fee()
}
