//! Crash and recovery: the engine binary is killed with SIGKILL after allotment, after
//! start and after payment, restarted on the same data directory each time; the apps
//! reconnect and finish the flow; nothing acknowledged is lost and nothing is charged
//! twice.

use std::process::Command;

use serde_json::json;
use wire::client::Client;
use wire::model::{OrderState, PaymentMethod, PaymentStatus};
use wire::{ServerMessage, UserId};

use crate::harness::{WAIT, at, expect, go_online};
use crate::process::{Engine, SECRET};

async fn order_state(c: &mut Client) -> wire::model::OrderSnapshot {
    expect(c, "order snapshot", |m| match m {
        ServerMessage::Order(o) => Some(*o.order),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn killed_three_times_nothing_lost_nothing_charged_twice() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(dir.path());
    let r = e
        .admin(
            "POST",
            "/v1/users",
            Some(json!({ "name": "Asha", "phone": "1" })),
        )
        .await;
    let user: UserId = r.body["id"].as_str().unwrap().parse().unwrap();
    let r = e
        .admin(
            "POST",
            "/v1/associates",
            Some(json!({ "name": "Ravi", "phone": "2", "skills": ["companion"] })),
        )
        .await;
    let associate: uuid::Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
    let user_token = e.token(user.0, "user").await;
    let associate_token = e.token(associate, "associate").await;

    // 1. Allot, then kill.
    let mut a = e.connect(&associate_token).await;
    go_online(&mut a, at(12.9726, 77.5946)).await;
    let mut u = e.connect(&user_token).await;
    u.send(wire::TaskRequest {
        client_ref: "c1".into(),
        task: "companion".into(),
        pickup: at(12.9716, 77.5946),
        note: None,
        discount_code: None,
    })
    .await
    .unwrap();
    let offer = expect(&mut a, "offer", |m| match m {
        ServerMessage::Offer(o) => Some(o),
        _ => None,
    })
    .await;
    a.send(wire::Accept {
        request_id: offer.request_id,
    })
    .await
    .unwrap();
    let order = expect(&mut u, "allotted", |m| match m {
        ServerMessage::Allotted(x) => Some(*x.order),
        _ => None,
    })
    .await;
    e.kill();

    // 2. Restart: both get the order back; arrive and start, then kill.
    let e = Engine::start(dir.path());
    let mut u = e.connect(&user_token).await;
    let seen = order_state(&mut u).await;
    assert_eq!(
        (seen.order_id, seen.state, seen.pin.clone()),
        (order.order_id, OrderState::Allotted, order.pin.clone())
    );
    let mut a = e.connect(&associate_token).await;
    let status = expect(&mut a, "status", |m| match m {
        ServerMessage::Status(s) => Some(s.availability),
        _ => None,
    })
    .await;
    assert_eq!(
        status,
        wire::model::Availability::Busy,
        "still on the order after the crash"
    );
    assert_eq!(order_state(&mut a).await.order_id, order.order_id);
    a.send(wire::Arrived {
        order_id: order.order_id,
    })
    .await
    .unwrap();
    a.send(wire::Start {
        order_id: order.order_id,
        pin: order.pin.clone().unwrap(),
    })
    .await
    .unwrap();
    expect(&mut u, "started", |m| match m {
        ServerMessage::OrderUpdate(x) if x.state == OrderState::Started => Some(()),
        _ => None,
    })
    .await;
    e.kill();

    // 3. Restart: complete, pay, then kill right after the payment result.
    let e = Engine::start(dir.path());
    let mut u = e.connect(&user_token).await;
    assert_eq!(order_state(&mut u).await.state, OrderState::Started);
    u.send(wire::Complete {
        order_id: order.order_id,
    })
    .await
    .unwrap();
    let invoice = expect(&mut u, "invoice", |m| match m {
        ServerMessage::Invoice(i) => Some(*i.invoice),
        _ => None,
    })
    .await;
    let pay = wire::Pay {
        order_id: order.order_id,
        method: PaymentMethod::Card,
        instrument: "4242424242424242".into(),
        idempotency_key: "crash-pay-1".into(),
        tip_minor: None,
    };
    u.send(pay.clone()).await.unwrap();
    let paid = expect(&mut u, "payment", |m| match m {
        ServerMessage::PaymentResult(p) => Some(*p.payment),
        _ => None,
    })
    .await;
    assert_eq!(
        (paid.status, paid.amount_minor),
        (PaymentStatus::Succeeded, invoice.total_minor)
    );
    e.kill();

    // 4. Restart: the order is paid and closed, charged once; a retry returns the first result.
    let e = Engine::start(dir.path());
    let mut u = e.connect(&user_token).await;
    u.send(pay).await.unwrap();
    let again = expect(&mut u, "payment again", |m| match m {
        ServerMessage::PaymentResult(p) => Some(*p.payment),
        _ => None,
    })
    .await;
    assert_eq!(again, paid);
    let stored = e
        .admin("GET", &format!("/v1/orders/{}", order.order_id), None)
        .await
        .body;
    assert_eq!(stored["order"]["state"], "closed");
    let payments = stored["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 1, "one charge");
    assert_eq!(payments[0]["status"], "succeeded");
    let states: Vec<&str> = stored["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "allotted",
            "arrived",
            "started",
            "completed",
            "billed",
            "paid",
            "closed"
        ]
    );
    // The associate is free again after the crashes.
    let mut a = e.connect(&associate_token).await;
    go_online(&mut a, at(12.9726, 77.5946)).await;
    u.send(wire::TaskRequest {
        client_ref: "c2".into(),
        task: "companion".into(),
        pickup: at(12.9716, 77.5946),
        note: None,
        discount_code: None,
    })
    .await
    .unwrap();
    expect(&mut a, "a new offer", |m| {
        matches!(m, ServerMessage::Offer(_)).then_some(())
    })
    .await;
    e.kill();
}

#[tokio::test]
async fn the_token_subcommand_signs_tokens_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let user = UserId::new();
    let out = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["token", "--role", "user", "--token-secret", SECRET, "--sub"])
        .arg(user.to_string())
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("SPEEDY_CONFIG")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let e = Engine::start(dir.path());
    let r = e
        .admin(
            "POST",
            "/v1/users",
            Some(json!({ "id": user, "name": "Asha", "phone": "1" })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut c = Client::connect(&format!("ws://{}/v1/ws", e.addr), &token)
        .await
        .unwrap();
    match c.recv_timeout(WAIT).await.unwrap() {
        ServerMessage::Welcome(w) => assert_eq!(w.id, user.0),
        other => panic!("{other:?}"),
    }
    e.kill();
}
