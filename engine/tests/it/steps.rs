//! The steps of the order flow as helpers, shared by the flow, restart and crash tests.

use wire::client::Client;
use wire::model::{OrderSnapshot, OrderState};
use wire::{ErrorCode, OrderId, ServerMessage};

use crate::harness::{Parties, at, expect};

/// A request for a companion at the test pickup.
pub fn request(code: Option<&str>) -> wire::TaskRequest {
    wire::TaskRequest {
        client_ref: "flow-1".into(),
        task: "companion".into(),
        pickup: at(12.9716, 77.5946),
        note: None,
        discount_code: code.map(str::to_owned),
    }
}

/// Request, offer, accept: the order as the user sees it (with PIN).
pub async fn allot(p: &mut Parties, code: Option<&str>) -> OrderSnapshot {
    p.u.send(request(code)).await.unwrap();
    accept_offer(p).await
}

/// The associate accepts the next offer and both hear of the order: the order as the user
/// sees it (with PIN).
pub async fn accept_offer(p: &mut Parties) -> OrderSnapshot {
    let offer = expect(&mut p.a, "offer", |m| match m {
        ServerMessage::Offer(o) => Some(o),
        _ => None,
    })
    .await;
    p.a.send(wire::Accept {
        request_id: offer.request_id,
    })
    .await
    .unwrap();
    expect(&mut p.a, "allotted", |m| {
        matches!(m, ServerMessage::Allotted(_)).then_some(())
    })
    .await;
    expect(&mut p.u, "allotted", |m| match m {
        ServerMessage::Allotted(x) => Some(*x.order),
        _ => None,
    })
    .await
}

pub async fn state_update(c: &mut Client, order: OrderId, state: OrderState) {
    expect(c, state.as_str(), |m| match m {
        ServerMessage::OrderUpdate(u) if u.order_id == order && u.state == state => Some(()),
        _ => None,
    })
    .await;
}

/// Arrive, start with the PIN, complete: both get the invoice.
pub async fn work(p: &mut Parties, order: &OrderSnapshot) -> wire::model::Invoice {
    let id = order.order_id;
    p.a.send(wire::EnRoute { order_id: id }).await.unwrap();
    state_update(&mut p.u, id, OrderState::EnRoute).await;
    p.a.send(wire::Arrived { order_id: id }).await.unwrap();
    state_update(&mut p.u, id, OrderState::Arrived).await;
    p.a.send(wire::Start {
        order_id: id,
        pin: order.pin.clone().unwrap(),
    })
    .await
    .unwrap();
    state_update(&mut p.a, id, OrderState::Started).await;
    p.u.send(wire::Complete { order_id: id }).await.unwrap();
    state_update(&mut p.a, id, OrderState::Completed).await;
    let theirs = expect(&mut p.a, "invoice", |m| match m {
        ServerMessage::Invoice(i) => Some(*i.invoice),
        _ => None,
    })
    .await;
    let mine = expect(&mut p.u, "invoice", |m| match m {
        ServerMessage::Invoice(i) => Some(*i.invoice),
        _ => None,
    })
    .await;
    assert_eq!(mine, theirs);
    assert_eq!(
        mine.lines.iter().map(|l| l.amount_minor).sum::<i64>(),
        mine.total_minor
    );
    mine
}

pub async fn payment_result(c: &mut Client) -> wire::model::PaymentOutcome {
    expect(c, "payment result", |m| match m {
        ServerMessage::PaymentResult(p) => Some(*p.payment),
        _ => None,
    })
    .await
}

pub async fn error(c: &mut Client) -> ErrorCode {
    expect(c, "error", |m| match m {
        ServerMessage::Error(e) => Some(e.code),
        _ => None,
    })
    .await
}
