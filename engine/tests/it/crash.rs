//! Crash and recovery: the engine binary is killed with SIGKILL after allotment, after
//! start and after payment, restarted on the same data directory each time; the apps
//! reconnect and finish the flow; nothing acknowledged is lost and nothing is charged
//! twice.

use std::process::Command;

use serde_json::json;
use wire::client::Client;
use wire::model::{OrderState, PaymentMethod, PaymentStatus};
use wire::{ServerMessage, UserId};

use crate::both;
use crate::harness::Backend;
use crate::harness::{WAIT, at, expect, go_online};
use crate::process::{Engine, SECRET};

async fn order_state(c: &mut Client) -> wire::model::OrderSnapshot {
    expect(c, "order snapshot", |m| match m {
        ServerMessage::Order(o) => Some(*o.order),
        _ => None,
    })
    .await
}

async fn killed_three_times_nothing_lost_nothing_charged_twice(backend: Backend) {
    let dir = backend.data_dir();
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
both!(killed_three_times_nothing_lost_nothing_charged_twice);

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

/// One user and the associate who serves them, far from every other pair (each pair is
/// 100+ km from the next, beyond any search radius), so every request has one candidate.
struct Pair {
    user_token: String,
    associate_token: String,
    pickup: wire::model::Point,
}

/// What the apps were told before a kill: each must hold after the restart.
#[derive(Default)]
struct Acks {
    /// Orders allotted (both apps got `allotted`).
    orders: Vec<wire::OrderId>,
    /// Payments reported `succeeded`.
    succeeded: Vec<wire::PaymentId>,
    /// Every payment id reported at all (pending, failed or succeeded).
    reported: Vec<wire::PaymentId>,
}

const ROUNDS: usize = 20;
const PAIRS: usize = 5;

/// Kill -9 as an outsider would run it: every round drives each pair to a billed order,
/// sends every payment at once (some instruments capture late, some never, some are
/// declined) and kills the engine a random few milliseconds later, with payments in
/// flight and two requests that nobody can serve open. After each restart: every
/// acknowledged order exists, every acknowledged success is still a success, every
/// pending payment settles within seconds, the gateway's ledger holds at most one
/// capture per payment and only for payments stored as succeeded, no order has two
/// successful payments, the open requests come back with the same ids, and every
/// associate is free for the next round.
async fn killed_with_payments_in_flight_and_requests_open_nothing_acknowledged_is_lost(
    backend: Backend,
) {
    use actors::orders::gateway::test_instruments as cards;
    use rand::{Rng, SeedableRng};

    let dir = backend.data_dir();
    crate::process::write_config(
        dir.path(),
        r#"
[dispatch]
retry_interval_ms = 50
offer_window_ms = 60000
request_timeout_ms = 600000

[payments]
reconcile_every_ms = 50
gateway_timeout_ms = 200
sandbox_latency_ms = 3
"#,
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_125);
    let mut e = Engine::start(dir.path());
    let mut pairs = Vec::new();
    for n in 0..PAIRS {
        let (_, user_token) = e.user(&format!("User {n}")).await;
        let (_, associate_token) = e.associate(&format!("Associate {n}"), &["companion"]).await;
        pairs.push(Pair {
            user_token,
            associate_token,
            pickup: at(10.0 + 1.5 * n as f64, 77.0),
        });
    }
    // Nobody does errands: these requests stay open across every kill.
    let mut lonely = Vec::new();
    for n in 0..2 {
        let (_, token) = e.user(&format!("Lonely {n}")).await;
        let mut c = e.connect(&token).await;
        c.send(wire::TaskRequest {
            client_ref: format!("lonely-{n}"),
            task: "errand".into(),
            pickup: at(30.0 + n as f64, 70.0),
            note: None,
            discount_code: None,
        })
        .await
        .unwrap();
        let received = expect(&mut c, "request_received", |m| match m {
            ServerMessage::RequestReceived(r) => Some(r),
            _ => None,
        })
        .await;
        lonely.push((token, received));
    }
    let mut all = Acks::default();
    let mut keys = 0u32;
    let mut in_flight = 0;
    for round in 0..ROUNDS {
        // Every pair to a billed order.
        let mut apps = Vec::new();
        for pair in &pairs {
            let mut a = e.connect(&pair.associate_token).await;
            go_online(
                &mut a,
                wire::model::Point {
                    lat: pair.pickup.lat + 0.001,
                    lng: pair.pickup.lng,
                },
            )
            .await;
            let mut u = e.connect(&pair.user_token).await;
            u.send(wire::TaskRequest {
                client_ref: format!("round-{round}"),
                task: "companion".into(),
                pickup: pair.pickup,
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
            all.orders.push(order.order_id);
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
            u.send(wire::Complete {
                order_id: order.order_id,
            })
            .await
            .unwrap();
            expect(&mut u, "invoice", |m| {
                matches!(m, ServerMessage::Invoice(_)).then_some(())
            })
            .await;
            apps.push((u, a, order.order_id));
        }
        // Every payment at once, then the kill a few milliseconds later.
        for (u, _, order) in &mut apps {
            let instrument = match rng.random_range(0..5) {
                0 => cards::CARD_LATE_CONFIRMATION,
                1 => cards::CARD_TIMEOUT,
                2 => cards::CARD_DECLINED,
                _ => "4242424242424242",
            };
            keys += 1;
            u.send(wire::Pay {
                order_id: *order,
                method: PaymentMethod::Card,
                instrument: instrument.into(),
                idempotency_key: format!("key-{keys}"),
                tip_minor: None,
            })
            .await
            .unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(rng.random_range(0..30))).await;
        e.kill();
        // Whatever reached the apps before the kill was acknowledged; a payment with no
        // final result yet was in flight at the kill.
        for (u, _, _) in &mut apps {
            in_flight += 1;
            while let Ok(m) = u.recv_timeout(std::time::Duration::from_millis(500)).await {
                if let ServerMessage::PaymentResult(p) = m {
                    if p.payment.status != PaymentStatus::Pending {
                        in_flight -= 1;
                    }
                    all.reported.push(p.payment.payment_id);
                    if p.payment.status == PaymentStatus::Succeeded {
                        all.succeeded.push(p.payment.payment_id);
                    }
                }
            }
        }
        drop(apps);

        e = Engine::start(dir.path());
        check_after_restart(&e, &all, round).await;
        // The requests nobody can serve are still open, with the same ids.
        for (token, received) in &lonely {
            let mut c = e.connect(token).await;
            let again = expect(&mut c, "the open request", |m| match m {
                ServerMessage::RequestReceived(r) => Some(r),
                _ => None,
            })
            .await;
            assert_eq!(&again, received, "round {round}");
        }
        // Orders whose payment failed are paid again with a good card, so every
        // associate is free for the next round.
        for order in &all.orders {
            let seen = e.order(*order).await;
            if seen["order"]["state"] == "closed" {
                continue;
            }
            assert_eq!(seen["order"]["state"], "billed", "round {round}: {seen:#}");
            let user: uuid::Uuid = seen["order"]["user_id"].as_str().unwrap().parse().unwrap();
            let token = e.token(user, "user").await;
            let mut u = e.connect(&token).await;
            keys += 1;
            u.send(wire::Pay {
                order_id: *order,
                method: PaymentMethod::Card,
                instrument: "4242424242424242".into(),
                idempotency_key: format!("key-{keys}"),
                tip_minor: None,
            })
            .await
            .unwrap();
            // The result of this payment: an earlier one still being settled after the
            // restart may report first.
            let key = format!("key-{keys}");
            let paid = expect(&mut u, "payment", |m| match m {
                ServerMessage::PaymentResult(p) if p.payment.idempotency_key == key => {
                    Some(*p.payment)
                }
                _ => None,
            })
            .await;
            assert_eq!(paid.status, PaymentStatus::Succeeded, "round {round}");
            all.succeeded.push(paid.payment_id);
            all.reported.push(paid.payment_id);
        }
    }
    check_after_restart(&e, &all, ROUNDS).await;
    assert_eq!(all.orders.len(), ROUNDS * PAIRS);
    // The kills landed with payments in flight, and after some were acknowledged.
    assert!(in_flight > 0, "no payment was in flight at any kill");
    assert!(!all.reported.is_empty(), "no payment was acknowledged");
    eprintln!(
        "{ROUNDS} kills: {} orders, {} payment results, {in_flight} payments without a final result at a kill, {} captures",
        all.orders.len(),
        all.reported.len(),
        e.ledger()
            .iter()
            .filter(|l| matches!(l, actors::orders::gateway::LedgerLine::Captured { .. }))
            .count()
    );
    e.kill();
}
both!(killed_with_payments_in_flight_and_requests_open_nothing_acknowledged_is_lost);

/// The invariants after a restart, once every pending payment has settled.
async fn check_after_restart(e: &Engine, acks: &Acks, round: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let orders = loop {
        let mut orders = Vec::new();
        for id in &acks.orders {
            orders.push(e.order(*id).await);
        }
        let pending = orders
            .iter()
            .flat_map(|o| o["payments"].as_array().unwrap().iter())
            .any(|p| p["status"] == "pending");
        if !pending {
            break orders;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "round {round}: payments still pending after {WAIT:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let mut succeeded = std::collections::HashSet::new();
    let mut stored = std::collections::HashSet::new();
    for o in &orders {
        let payments = o["payments"].as_array().unwrap();
        let ok: Vec<&serde_json::Value> = payments
            .iter()
            .filter(|p| p["status"] == "succeeded")
            .collect();
        assert!(
            ok.len() <= 1,
            "round {round}: two successful payments: {o:#}"
        );
        if o["order"]["state"] == "closed" {
            assert_eq!(ok.len(), 1, "round {round}: closed without payment: {o:#}");
        }
        for p in payments {
            let id = p["payment_id"].as_str().unwrap().to_owned();
            if p["status"] == "succeeded" {
                succeeded.insert(id.clone());
            }
            stored.insert(id);
        }
    }
    for id in &acks.reported {
        assert!(
            stored.contains(&id.to_string()),
            "round {round}: reported payment {id} lost"
        );
    }
    for id in &acks.succeeded {
        assert!(
            succeeded.contains(&id.to_string()),
            "round {round}: acknowledged success {id} is not a success"
        );
    }
    let mut captures = std::collections::HashMap::<String, u32>::new();
    for line in e.ledger() {
        if let actors::orders::gateway::LedgerLine::Captured { key, .. } = line {
            *captures.entry(key).or_default() += 1;
        }
    }
    for (key, n) in &captures {
        assert_eq!(*n, 1, "round {round}: {key} captured {n} times");
        assert!(
            succeeded.contains(key),
            "round {round}: {key} was captured but is not a successful payment"
        );
    }
}
