//! Orders to money to feedback over real sockets: the seed's nineteen steps, and the
//! cash, declined-card and cancellation variants.

use serde_json::json;
use wire::client::http_api;
use wire::model::{OrderState, PaymentMethod, PaymentStatus};
use wire::{ErrorCode, OrderId, ServerMessage};

use crate::both;
use crate::harness::Backend;
use crate::harness::{TestServer, at, expect, parties};
use crate::steps::{allot, error, payment_result, request, state_update, work};

async fn order_json(s: &TestServer, id: OrderId) -> serde_json::Value {
    let r = s.admin("GET", &format!("/v1/orders/{id}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

async fn all_nineteen_steps(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {});
    let code = json!({
        "code": "WELCOME50",
        "kind": { "percent": { "rate_bp": 5000, "cap_minor": 10000 } },
        "expires_at_ms": null,
        "min_order_minor": 0,
        "once_per_user": true
    });
    assert_eq!(
        s.admin("POST", "/v1/discounts", Some(code)).await.status,
        201
    );
    let mut p = parties(&s).await;
    let order = allot(&mut p, Some("WELCOME50")).await;
    let id = order.order_id;
    assert_eq!(order.discount_code.as_deref(), Some("WELCOME50"));
    // Live tracking during the order.
    p.a.send(wire::Location {
        point: at(12.9722, 77.5946),
        accuracy_m: None,
    })
    .await
    .unwrap();
    expect(&mut p.u, "peer location", |m| {
        matches!(m, ServerMessage::PeerLocation(_)).then_some(())
    })
    .await;
    // A wrong PIN is refused; the right one starts the job.
    p.a.send(wire::Arrived { order_id: id }).await.unwrap();
    state_update(&mut p.a, id, OrderState::Arrived).await;
    let wrong = if order.pin.as_deref() == Some("0000") {
        "1111"
    } else {
        "0000"
    };
    p.a.send(wire::Start {
        order_id: id,
        pin: wrong.into(),
    })
    .await
    .unwrap();
    assert_eq!(error(&mut p.a).await, ErrorCode::WrongPin);
    p.a.send(wire::Start {
        order_id: id,
        pin: order.pin.clone().unwrap(),
    })
    .await
    .unwrap();
    state_update(&mut p.u, id, OrderState::Started).await;
    p.u.send(wire::Complete { order_id: id }).await.unwrap();
    let invoice = expect(&mut p.u, "invoice", |m| match m {
        ServerMessage::Invoice(i) => Some(*i.invoice),
        _ => None,
    })
    .await;
    assert!(
        invoice
            .lines
            .iter()
            .any(|l| l.kind == wire::model::LineKind::Discount),
        "{invoice:?}"
    );
    // Pay by card with a tip, then retry with the same key: one charge.
    let pay = wire::Pay {
        order_id: id,
        method: PaymentMethod::Card,
        instrument: "4242424242424242".into(),
        idempotency_key: "pay-1".into(),
        tip_minor: Some(2_000),
    };
    p.u.send(pay.clone()).await.unwrap();
    let first = payment_result(&mut p.u).await;
    assert_eq!(first.status, PaymentStatus::Succeeded);
    assert_eq!(first.amount_minor, invoice.total_minor + 2_000);
    for c in [&mut p.u, &mut p.a] {
        let closed = expect(c, "order closed", |m| match m {
            ServerMessage::OrderClosed(x) => Some(*x.invoice),
            _ => None,
        })
        .await;
        assert_eq!(closed.total_minor, invoice.total_minor + 2_000);
        assert_eq!(
            closed.settlement.as_ref().map(|s| s.method),
            Some(PaymentMethod::Card)
        );
        // Both are asked for feedback once the order closes.
        expect(c, "feedback request", |m| {
            matches!(m, ServerMessage::FeedbackRequest(_)).then_some(())
        })
        .await;
    }
    p.u.send(pay).await.unwrap();
    let again = payment_result(&mut p.u).await;
    assert_eq!(again, first, "a retry returns the first result");
    let stored = order_json(&s, id).await;
    assert_eq!(stored["order"]["state"], "closed");
    assert_eq!(
        stored["payments"].as_array().unwrap().len(),
        1,
        "charged once"
    );
    assert_eq!(stored["events"].as_array().unwrap().len(), 7);
    // An app that saw events up to seq 4 reads back the rest with its token.
    let token = s.token(p.user.0, "user").await;
    let (source, seqs) = crate::harness::events_after(s.addr, &token, id, 4).await;
    assert_eq!(source, "store");
    assert_eq!(seqs, [5, 6]);
    // Both rate; a second rating is refused.
    p.u.send(wire::Feedback {
        order_id: id,
        rating: 5,
        comment: Some("kind".into()),
    })
    .await
    .unwrap();
    expect(&mut p.u, "recorded", |m| {
        matches!(m, ServerMessage::FeedbackRecorded(_)).then_some(())
    })
    .await;
    p.a.send(wire::Feedback {
        order_id: id,
        rating: 4,
        comment: None,
    })
    .await
    .unwrap();
    expect(&mut p.a, "recorded", |m| {
        matches!(m, ServerMessage::FeedbackRecorded(_)).then_some(())
    })
    .await;
    p.u.send(wire::Feedback {
        order_id: id,
        rating: 1,
        comment: None,
    })
    .await
    .unwrap();
    assert_eq!(error(&mut p.u).await, ErrorCode::AlreadyRated);
    // One more from social media, over HTTP with the API key.
    let social = json!({ "order_id": id, "about": "associate", "rating": 3, "source": "twitter", "comment": "late but fine" });
    let r = http_api::request(
        s.addr,
        "POST",
        "/v1/feedback",
        &[("x-api-key", &s.feedback_key)],
        Some(&social),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text);
    let recorded = r.body.clone();
    assert_eq!(recorded["rating"], 3);
    // The same source about the same party again: the rating on record, counted once.
    let again = json!({ "order_id": id, "about": "associate", "rating": 1, "source": "twitter" });
    let r = http_api::request(
        s.addr,
        "POST",
        "/v1/feedback",
        &[("x-api-key", &s.feedback_key)],
        Some(&again),
    )
    .await
    .unwrap();
    assert_eq!((r.status, &r.body), (200, &recorded), "{}", r.text);
    let r = http_api::request(
        s.addr,
        "POST",
        "/v1/feedback",
        &[("x-api-key", "nope-nope-nope-nope")],
        Some(&social),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"]["code"], "unauthorized");
    let associate = s
        .admin("GET", &format!("/v1/associates/{}", p.associate), None)
        .await
        .body;
    assert_eq!(
        (
            associate["rating_sum"].as_u64(),
            associate["rating_count"].as_u64()
        ),
        (Some(8), Some(2))
    );
    let user = s
        .admin("GET", &format!("/v1/users/{}", p.user), None)
        .await
        .body;
    assert_eq!(
        (user["rating_sum"].as_u64(), user["rating_count"].as_u64()),
        (Some(4), Some(1))
    );
    // The associate is available again and gets the next offer; the code was used once.
    let (_, token2) = s.user("Bela").await;
    let mut u2 = s.connect(&token2).await;
    u2.send(request(None)).await.unwrap();
    expect(&mut p.a, "next offer", |m| {
        matches!(m, ServerMessage::Offer(_)).then_some(())
    })
    .await;
    p.u.send(request(Some("WELCOME50"))).await.unwrap();
    assert_eq!(error(&mut p.u).await, ErrorCode::BadDiscountCode);
}
both!(all_nineteen_steps);

async fn cash_needs_the_full_amount(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {});
    let mut p = parties(&s).await;
    let order = allot(&mut p, None).await;
    let invoice = work(&mut p, &order).await;
    p.a.send(wire::CashReceived {
        order_id: order.order_id,
        amount_minor: invoice.total_minor - 1,
    })
    .await
    .unwrap();
    assert_eq!(error(&mut p.a).await, ErrorCode::InsufficientAmount);
    p.u.send(wire::CashReceived {
        order_id: order.order_id,
        amount_minor: invoice.total_minor,
    })
    .await
    .unwrap();
    assert_eq!(error(&mut p.u).await, ErrorCode::WrongRole);
    p.a.send(wire::CashReceived {
        order_id: order.order_id,
        amount_minor: invoice.total_minor,
    })
    .await
    .unwrap();
    let paid = payment_result(&mut p.u).await;
    assert_eq!(
        (paid.status, paid.amount_minor),
        (PaymentStatus::Succeeded, invoice.total_minor)
    );
    state_update(&mut p.a, order.order_id, OrderState::Closed).await;
    assert_eq!(
        order_json(&s, order.order_id).await["invoice"]["settlement"]["method"],
        "cash"
    );
}
both!(cash_needs_the_full_amount);

async fn a_declined_card_then_a_good_one(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {});
    let mut p = parties(&s).await;
    let order = allot(&mut p, None).await;
    let invoice = work(&mut p, &order).await;
    let pay = |instrument: &str, key: &str| wire::Pay {
        order_id: order.order_id,
        method: PaymentMethod::Card,
        instrument: instrument.into(),
        idempotency_key: key.into(),
        tip_minor: None,
    };
    p.u.send(pay(
        actors::orders::gateway::test_instruments::CARD_DECLINED,
        "k-declined",
    ))
    .await
    .unwrap();
    let declined = payment_result(&mut p.u).await;
    assert_eq!(
        (declined.status, declined.failure.as_deref()),
        (PaymentStatus::Failed, Some("card_declined"))
    );
    p.u.send(pay("4242424242424242", "k-good")).await.unwrap();
    let good = payment_result(&mut p.u).await;
    assert_eq!(
        (good.status, good.amount_minor),
        (PaymentStatus::Succeeded, invoice.total_minor)
    );
    state_update(&mut p.u, order.order_id, OrderState::Closed).await;
    let stored = order_json(&s, order.order_id).await;
    let statuses: Vec<&str> = stored["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == "succeeded").count(), 1);
    assert_eq!(statuses.iter().filter(|s| **s == "failed").count(), 1);
}
both!(a_declined_card_then_a_good_one);

async fn cancellations_are_free_in_the_window_and_cost_a_fee_after(backend: Backend) {
    // Free window of five minutes: the user cancels at once, for free.
    let s = TestServer::start_on(backend, |_| {});
    let mut p = parties(&s).await;
    let order = allot(&mut p, None).await;
    p.u.send(wire::CancelOrder {
        order_id: order.order_id,
        reason: Some("plans changed".into()),
    })
    .await
    .unwrap();
    state_update(&mut p.a, order.order_id, OrderState::Cancelled).await;
    let stored = order_json(&s, order.order_id).await;
    assert_eq!(stored["order"]["cancellation"]["fee_minor"], 0);
    assert_eq!(stored["order"]["cancellation"]["by"], "user");
    // The associate is free again.
    p.u.send(request(None)).await.unwrap();
    expect(&mut p.a, "offer after cancel", |m| {
        matches!(m, ServerMessage::Offer(_)).then_some(())
    })
    .await;
    drop(s);

    // No free window: the associate cancels after arriving and the fee applies; started
    // orders cannot be cancelled.
    let s = TestServer::start_on(backend, |c| c.pricing.cancellation.free_minutes = 0);
    let mut p = parties(&s).await;
    let order = allot(&mut p, None).await;
    p.a.send(wire::Arrived {
        order_id: order.order_id,
    })
    .await
    .unwrap();
    state_update(&mut p.u, order.order_id, OrderState::Arrived).await;
    p.a.send(wire::CancelOrder {
        order_id: order.order_id,
        reason: None,
    })
    .await
    .unwrap();
    state_update(&mut p.u, order.order_id, OrderState::Cancelled).await;
    let pricing = s.admin("GET", "/v1/pricing", None).await.body;
    let fee = pricing["cancellation"]["fee_minor"].as_i64().unwrap();
    let tax_bp = pricing["tax_bp"].as_i64().unwrap();
    // The fee is invoiced to the user: the fee plus tax on it.
    let invoice = expect(&mut p.u, "fee invoice", |m| match m {
        ServerMessage::Invoice(i) => Some(*i.invoice),
        _ => None,
    })
    .await;
    assert_eq!(invoice.order_id, order.order_id);
    assert_eq!(
        invoice.lines[0].kind,
        wire::model::LineKind::CancellationFee
    );
    assert_eq!(invoice.total_minor, fee + (fee * tax_bp + 5_000) / 10_000);
    let stored = order_json(&s, order.order_id).await;
    assert_eq!(
        stored["order"]["cancellation"]["fee_minor"].as_i64(),
        Some(fee)
    );
    assert_eq!(stored["order"]["cancellation"]["by"], "associate");
    assert_eq!(stored["invoice"]["total_minor"], invoice.total_minor);
    // Until it is paid the order stays open for the user (the associate is free).
    p.u.send(request(None)).await.unwrap();
    assert_eq!(error(&mut p.u).await, ErrorCode::AlreadyActive);
    // Cash is for work done, not fees.
    p.a.send(wire::CashReceived {
        order_id: order.order_id,
        amount_minor: invoice.total_minor,
    })
    .await
    .unwrap();
    assert_ne!(error(&mut p.a).await, ErrorCode::Internal);
    p.u.send(wire::Pay {
        order_id: order.order_id,
        method: PaymentMethod::Card,
        instrument: "4242424242424242".into(),
        idempotency_key: "fee-1".into(),
        tip_minor: None,
    })
    .await
    .unwrap();
    let paid = payment_result(&mut p.u).await;
    assert_eq!(
        (paid.status, paid.amount_minor),
        (PaymentStatus::Succeeded, invoice.total_minor)
    );
    let stored = order_json(&s, order.order_id).await;
    assert_eq!(stored["order"]["state"], "cancelled");
    assert_eq!(
        stored["invoice"]["settlement"]["transaction_ref"],
        paid.transaction_ref.unwrap()
    );
    let kinds: Vec<String> = stored["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["allotted", "arrived", "cancelled", "cancelled"]);

    let order = allot(&mut p, None).await;
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
    p.u.send(wire::CancelOrder {
        order_id: order.order_id,
        reason: None,
    })
    .await
    .unwrap();
    assert_eq!(error(&mut p.u).await, ErrorCode::InvalidState);
}
both!(cancellations_are_free_in_the_window_and_cost_a_fee_after);

async fn wrong_pins_lock_the_start(backend: Backend) {
    let s = TestServer::start_on(backend, |c| c.orders.pin_attempts = 3);
    let mut p = parties(&s).await;
    let order = allot(&mut p, None).await;
    let right = order.pin.clone().unwrap();
    let wrong = if right == "0000" { "1111" } else { "0000" };
    p.a.send(wire::Arrived {
        order_id: order.order_id,
    })
    .await
    .unwrap();
    state_update(&mut p.a, order.order_id, OrderState::Arrived).await;
    for expected in [
        ErrorCode::WrongPin,
        ErrorCode::WrongPin,
        ErrorCode::PinLocked,
    ] {
        p.a.send(wire::Start {
            order_id: order.order_id,
            pin: wrong.into(),
        })
        .await
        .unwrap();
        assert_eq!(error(&mut p.a).await, expected);
    }
    // Locked: even the right PIN waits.
    p.a.send(wire::Start {
        order_id: order.order_id,
        pin: right,
    })
    .await
    .unwrap();
    assert_eq!(error(&mut p.a).await, ErrorCode::PinLocked);
    assert_eq!(
        order_json(&s, order.order_id).await["order"]["state"],
        "arrived"
    );
}
both!(wrong_pins_lock_the_start);

async fn one_key_paid_at_the_same_moment_from_fifty_sockets_captures_once(backend: Backend) {
    let s = TestServer::start_on(backend, |_| {});
    let mut p = parties(&s).await;
    let order = allot(&mut p, None).await;
    let invoice = work(&mut p, &order).await;
    let token = s.token(p.user.0, "user").await;
    let pay = wire::Pay {
        order_id: order.order_id,
        method: PaymentMethod::Card,
        instrument: "4242424242424242".into(),
        idempotency_key: "same-key".into(),
        tip_minor: None,
    };
    // The same frame 50 times back to back on one socket...
    for _ in 0..50 {
        p.u.send(pay.clone()).await.unwrap();
    }
    let mut first_socket = p.u;
    let first_socket = tokio::spawn(async move {
        let mut results = Vec::new();
        while let Ok(m) = first_socket
            .recv_timeout(std::time::Duration::from_millis(500))
            .await
        {
            if let ServerMessage::PaymentResult(r) = m {
                results.push(*r.payment);
            }
        }
        results
    });
    // ...and from 50 sockets of the same user at once (each newer one replaces the
    // last, so some are cut off mid-way: whatever got through must charge once).
    let url = s.ws_url();
    let sockets: Vec<_> = (0..50)
        .map(|_| {
            let (url, token, pay) = (url.clone(), token.clone(), pay.clone());
            tokio::spawn(async move {
                let Ok(mut c) = wire::client::Client::connect(&url, &token).await else {
                    return Vec::new();
                };
                if c.send(pay).await.is_err() {
                    return Vec::new();
                }
                let mut results = Vec::new();
                while let Ok(m) = c.recv_timeout(std::time::Duration::from_millis(500)).await {
                    if let ServerMessage::PaymentResult(r) = m {
                        results.push(*r.payment);
                    }
                }
                results
            })
        })
        .collect();
    let mut results = first_socket.await.unwrap();
    for socket in sockets {
        results.extend(socket.await.unwrap());
    }
    // Asked once more, on a socket nobody replaces: the same one payment.
    let mut u = s.connect(&token).await;
    u.send(pay).await.unwrap();
    let first = payment_result(&mut u).await;
    results.push(first.clone());
    assert_eq!(first.status, PaymentStatus::Succeeded);
    assert_eq!(first.amount_minor, invoice.total_minor);
    // Every answer is about the one payment: pending while it was under way, then its
    // success with its one reference.
    for r in &results {
        assert_eq!(r.payment_id, first.payment_id, "{results:#?}");
        if r.status != PaymentStatus::Pending {
            assert_eq!(
                (r.status, &r.transaction_ref),
                (first.status, &first.transaction_ref)
            );
        }
    }
    let stored = order_json(&s, order.order_id).await;
    assert_eq!(stored["payments"].as_array().unwrap().len(), 1);
    assert_eq!(stored["order"]["state"], "closed");
    let ledger = actors::orders::gateway::read_ledger(
        &actors::orders::gateway::SandboxGateway::ledger_path(s.data_dir()),
    )
    .unwrap();
    let captures = ledger
        .iter()
        .filter(|l| matches!(l, actors::orders::gateway::LedgerLine::Captured { .. }))
        .count();
    assert_eq!(captures, 1, "{ledger:?}");
}
both!(one_key_paid_at_the_same_moment_from_fifty_sockets_captures_once);
