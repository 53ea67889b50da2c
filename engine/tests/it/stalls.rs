//! Orders nobody finishes: stalls are recorded in the order's events and counted; the
//! engine frees associates who would otherwise stay busy for good; ops cancel or
//! complete orders by hand through the admin API.

use serde_json::json;
use wire::model::{Availability, OrderState};
use wire::{OrderId, ServerMessage};

use crate::harness::{TestServer, at, expect, parties, poll_order};
use crate::steps::{allot, state_update, work};

/// Short stalls before work starts and while waiting for payment.
fn quick_stalls(c: &mut engine::Config) {
    c.orders.stall_after_ms.allotted = 300;
    c.orders.stall_after_ms.billed = 300;
}

/// Polls the order until `done` holds for it.
async fn until(
    s: &TestServer,
    order: OrderId,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    poll_order(s.addr, &s.admin_key, order, what, done).await
}

fn kinds(order: &serde_json::Value) -> Vec<String> {
    order["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let kind = &e["kind"];
            kind.as_str()
                .map(str::to_owned)
                .or_else(|| kind.as_object().and_then(|o| o.keys().next().cloned()))
                .unwrap()
        })
        .collect()
}

async fn metric(s: &TestServer, line_start: &str) -> f64 {
    let text = wire::client::http_api::request(s.addr, "GET", "/metrics", &[], None)
        .await
        .unwrap()
        .text;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_stalled_order_is_recorded_and_nobody_stays_busy_for_good() {
    let s = TestServer::start(quick_stalls);
    let mut p = parties(&s).await;

    // The associate's app goes away before work starts: nobody can move the order.
    let order = allot(&mut p, None).await;
    drop(p.a);
    let seen = until(&s, order.order_id, "cancelled", |o| {
        o["order"]["state"] == "cancelled"
    })
    .await;
    assert_eq!(kinds(&seen), ["allotted", "stalled", "ops_cancelled"]);
    assert_eq!(seen["events"][1]["kind"]["stalled"]["state"], "allotted");
    assert_eq!(seen["order"]["cancellation"]["by"], "ops");
    assert_eq!(seen["order"]["cancellation"]["fee_minor"], 0);
    state_update(&mut p.u, order.order_id, OrderState::Cancelled).await;
    assert_eq!(
        metric(&s, "speedy_orders_stalled_total{state=\"allotted\"}").await,
        1.0
    );
    // Back, the associate is free (and still online).
    let token = s.token(p.associate.0, "associate").await;
    let mut a = s.connect(&token).await;
    let status = expect(&mut a, "status", |m| match m {
        ServerMessage::Status(st) => Some(st.availability),
        _ => None,
    })
    .await;
    assert_eq!(status, Availability::Available);
    a.send(wire::Location {
        point: at(12.9726, 77.5946),
        accuracy_m: None,
    })
    .await
    .unwrap();
    p.a = a;

    // Waiting for a payment that does not come: the associate is freed, the order waits.
    let order = allot(&mut p, None).await;
    work(&mut p, &order).await;
    let seen = until(&s, order.order_id, "stalled while billed", |o| {
        kinds(o).contains(&"stalled".to_owned())
    })
    .await;
    assert_eq!(seen["order"]["state"], "billed");
    assert_eq!(metric(&s, "speedy_orders_stalled ").await, 1.0);
    let (_, token2) = s.user("Bela").await;
    let mut u2 = s.connect(&token2).await;
    u2.send(wire::TaskRequest {
        client_ref: "second".into(),
        task: "companion".into(),
        pickup: at(12.9716, 77.5946),
        note: None,
        discount_code: None,
    })
    .await
    .unwrap();
    expect(
        &mut p.a,
        "an offer while the last order waits for payment",
        |m| matches!(m, ServerMessage::Offer(_)).then_some(()),
    )
    .await;
    // The payment still closes the order, and the stall is over.
    p.u.send(wire::Pay {
        order_id: order.order_id,
        method: wire::model::PaymentMethod::Card,
        instrument: "4242424242424242".into(),
        idempotency_key: "late-payer".into(),
        tip_minor: None,
    })
    .await
    .unwrap();
    until(&s, order.order_id, "closed", |o| {
        o["order"]["state"] == "closed"
    })
    .await;
    assert_eq!(metric(&s, "speedy_orders_stalled ").await, 0.0);
}

#[tokio::test]
async fn ops_cancel_or_complete_an_order_with_a_reason_in_its_events() {
    let s = TestServer::start(|_| {});
    let mut p = parties(&s).await;
    let order = allot(&mut p, None).await;
    let path = format!("/v1/orders/{}/cancel", order.order_id);
    // The reason is required, the key too.
    let r = s.admin("POST", &path, Some(json!({ "reason": " " }))).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (422, Some("bad_field"))
    );
    let r = wire::client::http_api::request(
        s.addr,
        "POST",
        &path,
        &[],
        Some(&json!({ "reason": "x" })),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    let r = s
        .admin(
            "POST",
            &path,
            Some(json!({ "reason": "user called support" })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["order"]["state"], "cancelled");
    assert_eq!(
        r.body["events"][1]["kind"]["ops_cancelled"]["reason"],
        "user called support"
    );
    state_update(&mut p.a, order.order_id, OrderState::Cancelled).await;
    // Over: a second cancel conflicts; an unknown order is not found.
    let r = s
        .admin("POST", &path, Some(json!({ "reason": "again" })))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("invalid_state"))
    );
    let r = s
        .admin(
            "POST",
            &format!("/v1/orders/{}/complete", OrderId::new()),
            Some(json!({ "reason": "x" })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Started work that nobody marks done: ops complete it, billing follows.
    let order = allot(&mut p, None).await;
    let complete = format!("/v1/orders/{}/complete", order.order_id);
    let r = s
        .admin("POST", &complete, Some(json!({ "reason": "early" })))
        .await;
    assert_eq!(r.status, 409, "not started: {}", r.text);
    p.a.send(wire::Arrived {
        order_id: order.order_id,
    })
    .await
    .unwrap();
    p.a.send(wire::Start {
        order_id: order.order_id,
        pin: order.pin.clone().unwrap(),
    })
    .await
    .unwrap();
    state_update(&mut p.u, order.order_id, OrderState::Started).await;
    let r = s
        .admin(
            "POST",
            &complete,
            Some(json!({ "reason": "app crashed on site" })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let completed = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["kind"].get("ops_completed"))
        .unwrap_or_else(|| panic!("an ops_completed event: {}", r.body));
    assert_eq!(completed["reason"], "app crashed on site");
    expect(&mut p.u, "the invoice", |m| {
        matches!(m, ServerMessage::Invoice(_)).then_some(())
    })
    .await;
    // The associate is free at once, while the user still owes the invoice: the next
    // request nearby is offered to them.
    let (_, token) = s.user("Meera").await;
    let mut other = s.connect(&token).await;
    other.send(crate::steps::request(None)).await.unwrap();
    expect(&mut p.a, "an offer of the next request", |m| {
        matches!(m, ServerMessage::Offer(_)).then_some(())
    })
    .await;
}
