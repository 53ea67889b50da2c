//! What a restart keeps, with the engine binary killed by SIGKILL: open requests resume
//! (and never go back to who declined), associates stay online, payments in flight are
//! settled (paid if captured, voided and failed if not) and never charged twice, and
//! stored times are wall-clock times.

use std::time::Duration;

use actors::orders::gateway::{LedgerLine, test_instruments};
use wire::client::Client;
use wire::model::{Availability, OrderState, PaymentMethod, PaymentStatus};
use wire::{ErrorCode, OrderId, ServerMessage};

use crate::both;
use crate::harness::Backend;
use crate::harness::{Parties, at, expect, go_online};
use crate::process::{Engine, write_config};
use crate::steps::{allot, error, payment_result, request, work};

/// Fast reconciliation and retries, long windows and deadlines.
const FAST: &str = r#"
[dispatch]
retry_interval_ms = 50
offer_window_ms = 60000
request_timeout_ms = 600000

[payments]
reconcile_every_ms = 100
gateway_timeout_ms = 300
sandbox_latency_ms = 2
"#;

/// Connects an associate, puts them near the pickup and online; waits for `available`.
async fn online(e: &Engine, token: &str, dlat: f64) -> Client {
    let mut a = e.connect(token).await;
    go_online(&mut a, at(12.9716 + dlat, 77.5946)).await;
    available(&mut a).await;
    a
}

async fn available(a: &mut Client) {
    expect(a, "available", |m| match m {
        ServerMessage::Status(s) if s.availability == Availability::Available => Some(()),
        _ => None,
    })
    .await;
}

/// No offer reaches `c` in a short while (it must not be offered anything).
async fn no_offer(c: &mut Client) {
    while let Ok(m) = c.recv_timeout(Duration::from_millis(200)).await {
        assert!(!matches!(m, ServerMessage::Offer(_)), "unexpected {m:?}");
    }
}

async fn an_open_request_resumes_after_a_kill_and_never_goes_back_to_who_declined(
    backend: Backend,
) {
    let dir = backend.data_dir();
    write_config(dir.path(), FAST);
    let e = Engine::start(dir.path());
    let (_, user_token) = e.user("Asha").await;
    let (_, near_token) = e.associate("Near", &["companion"]).await;
    let (_, far_token) = e.associate("Far", &["companion"]).await;
    let mut near = online(&e, &near_token, 0.001).await;
    let mut far = online(&e, &far_token, 0.02).await;
    let mut u = e.connect(&user_token).await;
    u.send(request(None)).await.unwrap();
    let received = expect(&mut u, "request_received", |m| match m {
        ServerMessage::RequestReceived(r) => Some(r),
        _ => None,
    })
    .await;
    let offer = expect(&mut near, "offer", |m| match m {
        ServerMessage::Offer(o) => Some(o),
        _ => None,
    })
    .await;
    near.send(wire::Decline {
        request_id: offer.request_id,
    })
    .await
    .unwrap();
    // The next offer goes out only once the decline is on disk.
    let offer = expect(&mut far, "offer after the decline", |m| match m {
        ServerMessage::Offer(o) => Some(o),
        _ => None,
    })
    .await;
    assert_eq!(offer.request_id, received.request_id);
    e.kill();

    let e = Engine::start_logged(dir.path());
    // Recovery says what it found, and how long it took.
    let line = e
        .logged(&["recovered", "open_requests=1", "open_orders=0", "took_ms="])
        .await;
    assert!(line.contains("pending_payments=0"), "{line}");
    // The user hears of the same request again; it was never lost.
    let mut u = e.connect(&user_token).await;
    let again = expect(&mut u, "request_received again", |m| match m {
        ServerMessage::RequestReceived(r) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!(again, received);
    // Both associates were online before the kill: they are again, without asking.
    let mut near = e.connect(&near_token).await;
    available(&mut near).await;
    near.send(wire::Location {
        point: at(12.9726, 77.5946),
        accuracy_m: None,
    })
    .await
    .unwrap();
    let mut far = e.connect(&far_token).await;
    available(&mut far).await;
    far.send(wire::Location {
        point: at(12.9916, 77.5946),
        accuracy_m: None,
    })
    .await
    .unwrap();
    // The nearest one declined before the kill: the far one is offered, not them.
    let offer = expect(&mut far, "the resumed offer", |m| match m {
        ServerMessage::Offer(o) => Some(o),
        _ => None,
    })
    .await;
    assert_eq!(offer.request_id, received.request_id);
    no_offer(&mut near).await;
    far.send(wire::Accept {
        request_id: offer.request_id,
    })
    .await
    .unwrap();
    let order = expect(&mut u, "allotted", |m| match m {
        ServerMessage::Allotted(a) => Some(*a.order),
        _ => None,
    })
    .await;
    assert_eq!(order.request_id, received.request_id);
    // Allotted: it does not resume again after another kill.
    e.kill();
    let e = Engine::start(dir.path());
    let mut u = e.connect(&user_token).await;
    let first = expect(&mut u, "the order on reconnect", |m| match m {
        ServerMessage::Order(o) => Some(*o.order),
        ServerMessage::RequestReceived(r) => panic!("the request resumed after allotment: {r:?}"),
        _ => None,
    })
    .await;
    assert_eq!(first.order_id, order.order_id);
    u.send(wire::CancelRequest {
        request_id: received.request_id,
    })
    .await
    .unwrap();
    assert_eq!(error(&mut u).await, ErrorCode::UnknownRequest);
    e.kill();
}
both!(an_open_request_resumes_after_a_kill_and_never_goes_back_to_who_declined);

/// Now, in wall-clock milliseconds.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The user's request, acknowledged.
async fn requested(u: &mut Client, client_ref: &str) -> wire::RequestReceived {
    u.send(wire::TaskRequest {
        client_ref: client_ref.into(),
        ..request(None)
    })
    .await
    .unwrap();
    expect(u, "request_received", |m| match m {
        ServerMessage::RequestReceived(r) if r.client_ref == client_ref => Some(r),
        _ => None,
    })
    .await
}

/// Nobody to serve them: resumed requests end at their first deadline or when cancelled,
/// and one whose deadline passed while the engine was down is gone.
async fn resumed_requests_keep_their_deadline_and_can_be_cancelled(backend: Backend) {
    let dir = backend.data_dir();
    write_config(
        dir.path(),
        "[dispatch]\nretry_interval_ms = 50\nrequest_timeout_ms = 6000\n",
    );
    let e = Engine::start(dir.path());
    let (_, a_token) = e.user("Asha").await;
    let (_, b_token) = e.user("Bela").await;
    let (_, c_token) = e.user("Chitra").await;
    let mut a = e.connect(&a_token).await;
    let mut b = e.connect(&b_token).await;
    let ra = requested(&mut a, "a-1").await;
    let rb = requested(&mut b, "b-1").await;
    e.kill();

    let e = Engine::start(dir.path());
    // Cancelled after the restart: the resumed request is the user's to cancel.
    let mut b = e.connect(&b_token).await;
    let again = expect(&mut b, "request_received again", |m| match m {
        ServerMessage::RequestReceived(r) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!(again, rb);
    b.send(wire::CancelRequest {
        request_id: rb.request_id,
    })
    .await
    .unwrap();
    expect(&mut b, "request_cancelled", |m| match m {
        ServerMessage::RequestCancelled(r) if r.request_id == rb.request_id => Some(()),
        _ => None,
    })
    .await;
    // Left alone: `no_associate` comes at the deadline given before the kill, not a full
    // timeout (6 s) after the restart: within 3 s of it, for a busy machine.
    let mut a = e.connect(&a_token).await;
    let again = expect(&mut a, "request_received again", |m| match m {
        ServerMessage::RequestReceived(r) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!(again, ra);
    expect(&mut a, "no_associate", |m| match m {
        ServerMessage::NoAssociate(n) if n.request_id == ra.request_id => Some(()),
        _ => None,
    })
    .await;
    let at = wall_ms();
    assert!(
        at + 50 >= ra.expires_at_ms && at <= ra.expires_at_ms + 3_000,
        "no_associate at {at}, the deadline was {}",
        ra.expires_at_ms
    );

    // A request whose deadline passes while the engine is down is dropped at the start.
    let mut c = e.connect(&c_token).await;
    let rc = requested(&mut c, "c-1").await;
    e.kill();
    let wait = rc.expires_at_ms.saturating_sub(wall_ms()) + 100;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let e = Engine::start(dir.path());
    let mut c = e.connect(&c_token).await;
    c.send(wire::CancelRequest {
        request_id: rc.request_id,
    })
    .await
    .unwrap();
    let code = expect(&mut c, "the answer to cancel_request", |m| match m {
        ServerMessage::RequestReceived(r) => panic!("an expired request resumed: {r:?}"),
        ServerMessage::Error(err) => Some(err.code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::UnknownRequest);
    // The user is free to ask again.
    let fresh = requested(&mut c, "c-2").await;
    assert_ne!(fresh.request_id, rc.request_id);
    e.kill();
}
both!(resumed_requests_keep_their_deadline_and_can_be_cancelled);

/// A user and an online associate on a fresh engine, as `Parties`.
async fn pair(e: &Engine, n: usize) -> (Parties, String, String) {
    let (user, user_token) = e.user(&format!("User {n}")).await;
    let (associate, associate_token) = e.associate(&format!("Associate {n}"), &["companion"]).await;
    let a = online(e, &associate_token, 0.001).await;
    let u = e.connect(&user_token).await;
    (
        Parties {
            u,
            a,
            user,
            associate,
        },
        user_token,
        associate_token,
    )
}

fn pay(order: OrderId, instrument: &str, key: &str) -> wire::Pay {
    wire::Pay {
        order_id: order,
        method: PaymentMethod::Card,
        instrument: instrument.into(),
        idempotency_key: key.into(),
        tip_minor: None,
    }
}

/// How many captures the ledger holds for each payment id.
fn captures(e: &Engine) -> std::collections::HashMap<String, u32> {
    let mut out = std::collections::HashMap::new();
    for line in e.ledger() {
        if let LedgerLine::Captured { key, .. } = line {
            *out.entry(key).or_default() += 1;
        }
    }
    out
}

async fn payments_in_flight_at_a_kill_are_settled_after_restart_and_charged_once(backend: Backend) {
    let dir = backend.data_dir();
    // The periodic re-check is a minute away: what a restart left pending must settle
    // right after the start, not at the first re-check.
    write_config(
        dir.path(),
        &FAST.replace("reconcile_every_ms = 100", "reconcile_every_ms = 60000"),
    );
    let e = Engine::start(dir.path());
    let (mut p, user_token, associate_token) = pair(&e, 1).await;

    // 1. Captured at the gateway, but the answer never came back before the kill.
    let order = allot(&mut p, None).await;
    let invoice = work(&mut p, &order).await;
    p.u.send(pay(
        order.order_id,
        test_instruments::CARD_LATE_CONFIRMATION,
        "late-1",
    ))
    .await
    .unwrap();
    let pending = payment_result(&mut p.u).await;
    assert_eq!(pending.status, PaymentStatus::Pending);
    // While it is pending, nothing else may charge the order.
    p.u.send(pay(order.order_id, "4242424242424242", "late-2"))
        .await
        .unwrap();
    assert_eq!(error(&mut p.u).await, ErrorCode::PaymentPending);
    p.a.send(wire::CashReceived {
        order_id: order.order_id,
        amount_minor: invoice.total_minor,
    })
    .await
    .unwrap();
    assert_eq!(error(&mut p.a).await, ErrorCode::PaymentPending);
    e.kill();

    let e = Engine::start_logged(dir.path());
    // Recovery says what it found: the billed order and its payment in flight.
    e.logged(&[
        "recovered",
        "open_orders=1",
        "pending_payments=1",
        "open_requests=0",
        "took_ms=",
    ])
    .await;
    // Settled as paid (the gateway had captured it), without anyone reconnecting.
    let seen = e
        .until(order.order_id, "closed", |o| {
            o["order"]["state"] == "closed"
        })
        .await;
    let payments = seen["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 1, "{seen:#}");
    assert_eq!(payments[0]["status"], "succeeded");
    assert_eq!(
        captures(&e).get(&pending.payment_id.to_string()),
        Some(&1),
        "captured once"
    );
    let mut u = e.connect(&user_token).await;
    u.send(pay(
        order.order_id,
        test_instruments::CARD_LATE_CONFIRMATION,
        "late-1",
    ))
    .await
    .unwrap();
    let settled = payment_result(&mut u).await;
    assert_eq!(
        (settled.payment_id, settled.status),
        (pending.payment_id, PaymentStatus::Succeeded)
    );

    // 2. Never reached the gateway's books before the kill: voided, then failed; the
    // user pays again with a new key.
    let mut a = e.connect(&associate_token).await;
    available(&mut a).await;
    a.send(wire::Location {
        point: at(12.9726, 77.5946),
        accuracy_m: None,
    })
    .await
    .unwrap();
    let mut p = Parties {
        u,
        a,
        user: p.user,
        associate: p.associate,
    };
    let order = allot(&mut p, None).await;
    work(&mut p, &order).await;
    p.u.send(pay(
        order.order_id,
        test_instruments::CARD_TIMEOUT,
        "stall-1",
    ))
    .await
    .unwrap();
    let pending = payment_result(&mut p.u).await;
    assert_eq!(pending.status, PaymentStatus::Pending);
    e.kill();

    let e = Engine::start(dir.path());
    let seen = e
        .until(order.order_id, "failed", |o| {
            o["payments"][0]["status"] == "failed"
        })
        .await;
    assert_eq!(seen["order"]["state"], "billed");
    assert!(
        e.ledger().contains(&LedgerLine::Voided {
            key: pending.payment_id.to_string()
        }),
        "voided at the gateway before being called failed"
    );
    let mut u = e.connect(&user_token).await;
    // The app does what PROTOCOL.md says on reconnect: resend `pay` with the same key.
    // It is told the payment failed, and nothing is charged.
    u.send(pay(
        order.order_id,
        test_instruments::CARD_TIMEOUT,
        "stall-1",
    ))
    .await
    .unwrap();
    let told = loop {
        let result = payment_result(&mut u).await;
        if result.payment_id == pending.payment_id {
            break result;
        }
    };
    assert_eq!(told.status, PaymentStatus::Failed, "{told:?}");
    u.send(pay(order.order_id, "4242424242424242", "after-void"))
        .await
        .unwrap();
    // The stalled payment's final answer may reach the user's new connection first
    // (the user is told either way): it must say failed; the new payment's comes next.
    let paid = loop {
        let result = payment_result(&mut u).await;
        if result.payment_id != pending.payment_id {
            break result;
        }
        assert_eq!(result.status, PaymentStatus::Failed, "{result:?}");
    };
    assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
    e.until(order.order_id, "closed", |o| {
        o["order"]["state"] == "closed"
    })
    .await;
    // Every capture is a succeeded payment, once.
    let captured = captures(&e);
    assert!(captured.values().all(|n| *n == 1), "{captured:?}");
    assert_eq!(captured.len(), 2);
    e.kill();
}
both!(payments_in_flight_at_a_kill_are_settled_after_restart_and_charged_once);

#[tokio::test]
async fn stored_times_are_wall_clock_so_windows_and_minutes_hold_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), FAST);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Written by an earlier run of the engine: an order allotted 10 minutes ago (past the
    // 5-minute free window), and one whose work started 30 minutes ago.
    let (cancel, complete) = {
        let store = storage::Store::open(&storage::StoreConfig {
            path: Some(dir.path().join("db")),
            ..storage::StoreConfig::default()
        })
        .unwrap();
        let mut ids = Vec::new();
        for (n, steps) in [
            (1, vec![wire::model::OrderEventKind::Arrived]),
            (
                2,
                vec![
                    wire::model::OrderEventKind::Arrived,
                    wire::model::OrderEventKind::Started,
                ],
            ),
        ] {
            let user = storage::UserProfile {
                id: wire::UserId::new(),
                name: format!("User {n}"),
                phone: "1".into(),
                email: None,
                addresses: vec![],
                date_of_birth: None,
                life_events: vec![],
                rating_sum: 0,
                rating_count: 0,
                created_at_ms: now_ms - 3_600_000,
            };
            let associate = storage::AssociateProfile {
                id: wire::AssociateId::new(),
                name: format!("Associate {n}"),
                phone: "2".into(),
                skills: vec!["companion".into()],
                home_zone: None,
                rating_sum: 0,
                rating_count: 0,
                created_at_ms: now_ms - 3_600_000,
            };
            store.put_user(&user).unwrap().wait().unwrap();
            store.put_associate(&associate).unwrap().wait().unwrap();
            let order = storage::OrderRecord {
                order_id: OrderId::new(),
                request_id: wire::RequestId::new(),
                user_id: user.id,
                associate_id: associate.id,
                state: OrderState::Allotted,
                task: "companion".into(),
                pickup: storage::LatLng::new(12.9716, 77.5946).unwrap(),
                note: None,
                discount_code: None,
                user: user.summary(),
                associate: associate.summary(),
                pin: "1234".into(),
                allotted_at_ms: now_ms - 31 * 60_000,
                started_at_ms: None,
                completed_at_ms: None,
                ended_at_ms: None,
                invoice_id: None,
                payment_id: None,
                cancellation: None,
                next_seq: 0,
            };
            store.create_order_durable(order.clone()).wait().unwrap();
            for kind in steps {
                store
                    .transition_durable(order.order_id, now_ms - 30 * 60_000, kind, vec![])
                    .wait()
                    .unwrap();
            }
            ids.push((order.order_id, user.id, associate.id));
        }
        (ids[0], ids[1])
    };
    let e = Engine::start(dir.path());
    let token = e.token(cancel.1.0, "user").await;
    let mut u = e.connect(&token).await;
    u.send(wire::CancelOrder {
        order_id: cancel.0,
        reason: None,
    })
    .await
    .unwrap();
    let fee = expect(&mut u, "the fee invoice", |m| match m {
        ServerMessage::Invoice(i) => Some(*i.invoice),
        _ => None,
    })
    .await;
    assert_eq!(fee.lines[0].kind, wire::model::LineKind::CancellationFee);
    assert!(fee.lines[0].amount_minor > 0, "past the free window");

    let token = e.token(complete.1.0, "user").await;
    let mut u = e.connect(&token).await;
    u.send(wire::Complete {
        order_id: complete.0,
    })
    .await
    .unwrap();
    let invoice = expect(&mut u, "the invoice", |m| match m {
        ServerMessage::Invoice(i) => Some(*i.invoice),
        _ => None,
    })
    .await;
    let time = invoice
        .lines
        .iter()
        .find(|l| l.kind == wire::model::LineKind::Time)
        .unwrap();
    assert!(
        time.label.starts_with("30 min") || time.label.starts_with("31 min"),
        "{}",
        time.label
    );
    let stored = e.order(complete.0).await;
    let completed_at = stored["order"]["completed_at_ms"].as_u64().unwrap();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        (now_ms..=wall).contains(&completed_at),
        "stored at the wall-clock moment of the event"
    );
    e.kill();
}

#[test]
fn help_says_how_long_keys_must_be() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_engine"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("at least 16 characters"), "{help}");
}

#[tokio::test]
async fn the_start_up_line_says_where_the_admin_key_comes_from() {
    let dir = tempfile::tempdir().unwrap();
    let given = Engine::start(dir.path());
    assert!(
        given.banner.contains("admin key as given"),
        "{}",
        given.banner
    );
    given.kill();
    let generated = Engine::start_with(dir.path(), &[]);
    assert!(
        generated.banner.contains("admin key in") && generated.banner.contains("secrets.json"),
        "{}",
        generated.banner
    );
    generated.kill();
}
